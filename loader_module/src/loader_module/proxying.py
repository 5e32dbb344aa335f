"""Downloads through an HTTPS proxy: which hosts bypass it (`NO_PROXY`) and the transport that routes.

IoT Edge hands modules `https_proxy` when the device reaches the internet only through a proxy. An
`https` download then goes through a CONNECT tunnel: TLS stays end to end, so certificate checks, the
SAS and every digest are exactly as without the proxy. The rules are explicit here rather than httpx's
`trust_env`, which would also read `.netrc` credentials and the `SSL_CERT_*` variables, and does not
understand CIDR blocks in `NO_PROXY`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from ssl import SSLContext

import httpx

from loader_module.streams import AsyncioTransport

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class NoProxy:
    """Parsed `NO_PROXY`: `*`, host names (matching themselves and their subdomains; a leading `.` or
    `*.` is the same), IP addresses and CIDR blocks. A `:port` suffix is ignored (every port bypasses)."""

    everything: bool = False
    names: tuple[str, ...] = ()
    networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> NoProxy:
        names: list[str] = []
        networks: list[IpNetwork] = []
        for raw in text.replace(" ", ",").split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                return cls(everything=True)
            network = _network(entry)
            host, _, port = entry.rpartition(":")
            if network is None and host and port.isdigit():  # `host:port`: every port bypasses
                entry = host
                network = _network(entry)
            if network is not None:
                networks.append(network)
            else:
                names.append(entry.removeprefix("*").lstrip("."))
        return cls(names=tuple(names), networks=tuple(networks))

    def bypasses(self, host: str) -> bool:
        """True when `host` (a name or an IP, as in a URL) is reached without the proxy."""
        if self.everything:
            return True
        host = host.lower().strip("[]").rstrip(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return any(host == name or host.endswith("." + name) for name in self.names)
        return any(address in network for network in self.networks)


def _network(text: str) -> IpNetwork | None:
    try:
        return ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        return None


class ProxyRouter(httpx.AsyncBaseTransport):
    """`https` requests through the proxy unless `NO_PROXY` says otherwise; everything else direct."""

    def __init__(
        self, direct: httpx.AsyncBaseTransport, proxied: httpx.AsyncBaseTransport, no_proxy: NoProxy
    ) -> None:
        self._direct = direct
        self._proxied = proxied
        self._no_proxy = no_proxy

    def uses_proxy(self, url: httpx.URL) -> bool:
        return url.scheme == "https" and not self._no_proxy.bypasses(url.host)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._proxied if self.uses_proxy(request.url) else self._direct
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        try:
            await self._proxied.aclose()
        finally:
            await self._direct.aclose()


def download_transport(verify: SSLContext, proxy_url: str | None, no_proxy: str) -> httpx.AsyncBaseTransport:
    """The transport downloads use: direct, or routed through `proxy_url` (the same TLS trust for the
    origin either way). Direct connections use asyncio's TLS streams (`loader_module.streams`)."""
    direct = AsyncioTransport(verify)
    if proxy_url is None:
        return direct
    # An `https://` proxy is itself checked against the same trust (httpcore refuses a context for http).
    tls_to_proxy = verify if proxy_url.startswith("https://") else None
    proxied = httpx.AsyncHTTPTransport(verify=verify, proxy=httpx.Proxy(proxy_url, ssl_context=tls_to_proxy))
    return ProxyRouter(direct, proxied, NoProxy.parse(no_proxy))
