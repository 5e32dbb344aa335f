"""NO_PROXY rules and the routing transport (pure logic; the real proxy is in test_proxy_and_redirects)."""

from __future__ import annotations

import httpx
import pytest

from loader_module.proxying import NoProxy, ProxyRouter


@pytest.mark.parametrize(
    ("rules", "host", "bypass"),
    [
        ("", "acct.blob.core.windows.net", False),
        ("*", "acct.blob.core.windows.net", True),
        ("blob.core.windows.net", "acct.blob.core.windows.net", True),
        (".blob.core.windows.net", "acct.blob.core.windows.net", True),
        ("core.windows.net", "blob.core.windows.net", True),
        ("windows.net", "notwindows.net", False),
        ("localhost, 127.0.0.1", "127.0.0.1", True),
        ("10.0.0.0/8,edgehub", "10.1.2.3", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("10.0.0.0/8", "10.example.com", False),
        ("::1", "[::1]", True),
        ("[::1]:443", "::1", True),
        ("fd00::/8", "fd12::1", True),
        ("storage.local:443", "storage.local", True),
        ("Storage.LOCAL", "storage.local.", True),
        ("*.corp", "files.corp", True),
        ("*.corp", "corp.example", False),
    ],
)
def test_no_proxy_rules(rules: str, host: str, bypass: bool) -> None:
    assert NoProxy.parse(rules).bypasses(host) is bypass


async def test_router_sends_https_through_the_proxy_unless_bypassed() -> None:
    seen: list[str] = []

    def transport(name: str) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            seen.append(f"{name} {request.url.host}")
            return httpx.Response(200)

        return httpx.MockTransport(handle)

    router = ProxyRouter(transport("direct"), transport("proxy"), NoProxy.parse("internal.local"))
    async with httpx.AsyncClient(transport=router) as client:
        await client.get("https://acct.blob.core.windows.net/m/x.zip")
        await client.get("https://files.internal.local/x.zip")
        await client.get("http://127.0.0.1:10000/x.zip")  # HTTPS_PROXY is for https only
    assert seen == ["proxy acct.blob.core.windows.net", "direct files.internal.local", "direct 127.0.0.1"]
