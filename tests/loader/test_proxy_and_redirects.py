"""Downloads through a real HTTPS proxy, and redirects (issue 17, item 16).

IoT Edge hands modules `https_proxy` where a device reaches the internet only through a proxy. The
proxy here is proxy.py, a real forward proxy started on loopback for each test and stopped after it:
the loader opens a CONNECT tunnel through it to Azurite (TLS end to end), resumes a cut download
through it, and bypasses it for `NO_PROXY` hosts. Redirects come from a real HTTPS server: followed
`https`→`https` up to `LOADER_MAX_REDIRECTS`, never to another scheme, with every check unchanged.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_shared.repository import ModelRepository
from edge_tools.azurite import Azurite
from edge_tools.faultproxy import FaultProxy, Policy
from loader_module.download import Downloader, DownloadLimits
from loader_module.edge import make_http_client
from loader_module.errors import DownloadFailedError, SasExpiredError
from loader_module.settings import LoaderSettings
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import desired_for, make_settings, model_zip
from tests.loader.https_proxy import HttpsProxy
from tests.loader.https_server import HttpsServer, Receive, Send, serve_https
from tests.loader.service_helpers import running_loader, update, wait_state
from tests.reliability.invariants import poll

pytestmark = pytest.mark.integration

LIMITS = DownloadLimits(64 << 20, 0, 4, 0.01, 0.05, 0.0, max_redirects=3)


async def _nothing(done: int, total: int | None, attempt: int) -> None:
    del done, total, attempt


@pytest.fixture
def https_proxy(tmp_path: Path) -> Iterator[HttpsProxy]:
    with HttpsProxy(tmp_path / "proxy") as proxy:
        yield proxy


def _tunnels_to(proxy: HttpsProxy, port: int, count: int) -> list[tuple[str, int]]:
    """The proxy's finished CONNECT tunnels to 127.0.0.1:`port`, once there are `count` of them (a
    tunnel is logged when it closes, shortly after the client lets it go)."""

    def to_port() -> list[tuple[str, int]]:
        return [tunnel for tunnel in proxy.connects() if tunnel[0] == f"127.0.0.1:{port}"]

    poll(lambda: len(to_port()) >= count, within=10)
    return to_port()


def _publish(azurite: Azurite, data: bytes, version: str, *, port: int | None = None) -> dict[str, Any]:
    name = f"proxy/{uuid.uuid4().hex}/{version}.zip"
    azurite.upload("models", name, data)
    return desired_for(data, azurite.sas_url("models", name, port=port), f"{version}.zip")


async def test_update_through_the_proxy_installs_over_a_connect_tunnel(
    azurite: Azurite, https_proxy: HttpsProxy, model_root: Path
) -> None:
    settings = make_settings(model_root, ca_file=azurite.ca_file, https_proxy=https_proxy.url)
    data = model_zip("onnx", padding=300_000)
    hub = FakeEdgeHubClient(desired={"$version": 1, **_publish(azurite, data, "v1")})
    async with make_http_client(settings) as client, running_loader(settings, hub, client):
        await wait_state(hub, "ready", "v1")
    tunnels = _tunnels_to(https_proxy, azurite.port, 1)
    assert len(tunnels) == 1 and tunnels[0][1] >= len(data)  # the blob came through the tunnel
    assert ModelRepository(model_root).current_version() == "v1"


async def test_cut_download_resumes_through_the_proxy(
    azurite: Azurite, https_proxy: HttpsProxy, tmp_path: Path
) -> None:
    """loader → proxy.py → fault proxy (cuts the first connection after 1 MiB) → Azurite."""
    data = os.urandom(3 * 1024 * 1024)
    name = f"proxy/{uuid.uuid4().hex}.zip"
    azurite.upload("models", name, data)
    settings = make_settings(tmp_path / "root", ca_file=azurite.ca_file, https_proxy=https_proxy.url)
    with FaultProxy(azurite.port, [Policy(cut_after=1024 * 1024), Policy()]) as cutter:
        url = azurite.sas_url("models", name, port=cutter.port)
        async with make_http_client(settings) as client:
            result = await Downloader(client, LIMITS).fetch(
                lambda: url, tmp_path / "a.part", expected_size=len(data), on_progress=_nothing
            )
        assert cutter.connections == 2
    assert result.sha256 == hashlib.sha256(data).digest() and result.attempts == 2
    assert result.fetched <= len(data) * 1.05  # resumed with Range, not fetched again from 0
    assert len(_tunnels_to(https_proxy, cutter.port, 2)) == 2


async def test_no_proxy_hosts_are_reached_directly(
    azurite: Azurite, https_proxy: HttpsProxy, tmp_path: Path
) -> None:
    name = f"proxy/{uuid.uuid4().hex}.zip"
    data = os.urandom(100_000)
    azurite.upload("models", name, data)
    for no_proxy in ("127.0.0.1", "127.0.0.0/8", "*"):
        settings = make_settings(
            tmp_path / "root", ca_file=azurite.ca_file, https_proxy=https_proxy.url, no_proxy=no_proxy
        )
        async with make_http_client(settings) as client:
            result = await Downloader(client, LIMITS).fetch(
                lambda: azurite.sas_url("models", name),
                tmp_path / f"{no_proxy[:3]}.part",
                expected_size=None,
                on_progress=_nothing,
            )
        assert result.sha256 == hashlib.sha256(data).digest()
    # A tunnel the loader opened would be logged when the client closed it: the proxy has seen none.
    settings = make_settings(tmp_path / "root", ca_file=azurite.ca_file, https_proxy=https_proxy.url)
    async with make_http_client(settings) as client:  # the same download through the proxy, for contrast
        await Downloader(client, LIMITS).fetch(
            lambda: azurite.sas_url("models", name),
            tmp_path / "via.part",
            expected_size=None,
            on_progress=_nothing,
        )
    assert len(_tunnels_to(https_proxy, azurite.port, 1)) == 1


# --- redirects ---------------------------------------------------------------------------------------


@dataclass
class Redirecting:
    """`/hop/N` redirects to `/hop/N-1` (relative Location); `/hop/0` serves `data` with ETag and
    Range; `/away` redirects to `away_to`; `/loop` to itself; `/denied` answers 403."""

    data: bytes = b""
    away_to: str = ""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        del receive
        assert scope["type"] == "http"
        path: str = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append((path, headers))
        if path.startswith("/hop/") and path != "/hop/0":
            await _answer(send, 302, [(b"location", f"/hop/{int(path[5:]) - 1}?sig=HOPSIG".encode())])
        elif path == "/away":
            await _answer(send, 307, [(b"location", self.away_to.encode())])
        elif path == "/loop":
            await _answer(send, 301, [(b"location", b"/loop")])
        elif path == "/denied":
            await _answer(send, 403, [])
        else:
            start = int(headers.get("range", "bytes=0-")[6:].rstrip("-") or 0)
            body = self.data[start:]
            reply = [(b"etag", b'"r-1"'), (b"content-length", str(len(body)).encode())]
            if start:
                total = len(self.data)
                reply.append((b"content-range", f"bytes {start}-{total - 1}/{total}".encode()))
            await _answer(send, 206 if start else 200, reply, body)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    if not any(name == b"content-length" for name, _ in headers):
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class RedirectServer:
    server: HttpsServer
    app: Redirecting

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(self.server.ca_file)))

    async def fetch(self, path: str, part: Path, limits: DownloadLimits = LIMITS) -> Any:
        async with self.client() as client:
            return await Downloader(client, limits).fetch(
                lambda: f"{self.server.origin}{path}?sig=FIRSTSIG",
                part,
                expected_size=None,
                on_progress=_nothing,
            )


@pytest.fixture
async def redirects(tmp_path: Path) -> AsyncIterator[RedirectServer]:
    app = Redirecting(data=os.urandom(200_000))
    async with serve_https(app, tmp_path / "tls") as server:
        yield RedirectServer(server, app)


async def test_redirects_are_followed_up_to_the_limit(redirects: RedirectServer, tmp_path: Path) -> None:
    result = await redirects.fetch("/hop/3", tmp_path / "a.part")
    assert result.sha256 == hashlib.sha256(redirects.app.data).digest()
    assert [path for path, _ in redirects.app.requests] == ["/hop/3", "/hop/2", "/hop/1", "/hop/0"]
    redirects.app.requests.clear()
    with pytest.raises(DownloadFailedError, match="more than 3 redirects"):
        await redirects.fetch("/hop/4", tmp_path / "b.part")
    with pytest.raises(DownloadFailedError, match="more than 3 redirects"):
        await redirects.fetch("/loop", tmp_path / "c.part")
    assert len(redirects.app.requests) == 4 + 4  # each stopped after max + 1 requests, no retry
    with pytest.raises(DownloadFailedError, match="redirects"):  # 0: a redirect is not followed
        await redirects.fetch(
            "/hop/1", tmp_path / "d.part", DownloadLimits(**{**LIMITS.__dict__, "max_redirects": 0})
        )


async def test_redirect_to_another_scheme_is_refused(redirects: RedirectServer, tmp_path: Path) -> None:
    async with serve_https(Redirecting(data=b"plain"), tmp_path / "plain", tls=False) as plain:
        redirects.app.away_to = f"{plain.origin}/hop/0"
        with pytest.raises(DownloadFailedError, match="from https to http"):
            await redirects.fetch("/away", tmp_path / "a.part")
        redirects.app.away_to = "ftp://127.0.0.1/x.zip"
        with pytest.raises(DownloadFailedError, match="from https to ftp"):
            await redirects.fetch("/away", tmp_path / "b.part")


async def test_checks_apply_to_the_answer_after_a_redirect(redirects: RedirectServer, tmp_path: Path) -> None:
    redirects.app.away_to = "/denied"
    with pytest.raises(SasExpiredError):
        await redirects.fetch("/away", tmp_path / "a.part")
    # A resume's Range and If-Match go along the redirects to the blob.
    part = tmp_path / "b.part"
    part.write_bytes(redirects.app.data[:50_000])
    part.with_suffix(".json").write_text('{"etag": "\\"r-1\\"", "total": 200000}')
    redirects.app.requests.clear()
    result = await redirects.fetch("/hop/2", part)
    assert result.sha256 == hashlib.sha256(redirects.app.data).digest() and result.fetched == 150_000
    assert all(headers.get("range") == "bytes=50000-" for _, headers in redirects.app.requests)


async def test_service_installs_through_redirects_and_keeps_the_digest_check(
    tmp_path: Path, model_root: Path
) -> None:
    data = model_zip("onnx")
    app = Redirecting(data=data)
    async with serve_https(app, tmp_path / "tls") as server:
        settings = make_settings(model_root, ca_file=server.ca_file)
        good = desired_for(data, f"{server.origin}/hop/2?sig=S", "red-1.zip")
        bad = desired_for(data + b"!", f"{server.origin}/hop/2?sig=S", "red-2.zip")  # digests of other bytes
        hub = FakeEdgeHubClient(desired={"$version": 1, **good})
        async with make_http_client(settings) as client, running_loader(settings, hub, client):
            await wait_state(hub, "ready", "red-1")
            await hub.push_desired(bad)
            await wait_state(hub, "failed", "red-2")
            assert update(hub)["error"]["code"] == "checksum_mismatch"
            assert "HOPSIG" not in str(hub.reported)
    assert ModelRepository(model_root).current_version() == "red-1"


def test_settings_follow_three_redirects_by_default(tmp_path: Path) -> None:
    assert make_settings(tmp_path).max_redirects == 3
    assert LoaderSettings.model_fields["max_redirects"].description
