"""A storm of 5xx/429 answers from a real HTTPS server (uvicorn on loopback), then success.

Azurite cannot be made to answer 5xx, so this small ASGI blob server does: it fails the first N
requests (with `Retry-After`), then serves the blob with ETag and Range like Blob Storage.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from loader_module.download import Downloader, DownloadLimits
from loader_module.edge import make_http_client
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import desired_for, make_settings, model_zip
from tests.loader.https_server import Receive, Send, serve_https
from tests.loader.service_helpers import running_loader, status_events, update, wait_state

pytestmark = pytest.mark.integration


@dataclass
class FlakyBlob:
    """The ASGI app: `failures` answers from `statuses` in turn, then the blob."""

    data: bytes
    statuses: list[int]
    requests: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        del receive  # requests have no body
        assert scope["type"] == "http"
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(headers)
        if self.statuses:
            status = self.statuses.pop(0)
            await send({"type": "http.response.start", "status": status, "headers": [(b"retry-after", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        start = int(headers.get("range", "bytes=0-")[6:].rstrip("-") or 0)
        body = self.data[start:]
        reply = [(b"etag", b'"blob-1"'), (b"content-length", str(len(body)).encode())]
        if start:
            reply.append((b"content-range", f"bytes {start}-{len(self.data) - 1}/{len(self.data)}".encode()))
        await send({"type": "http.response.start", "status": 206 if start else 200, "headers": reply})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Served:
    url: str
    ca_file: Path
    app: FlakyBlob


@pytest.fixture
async def flaky_server(tmp_path: Path) -> AsyncIterator[Served]:
    app = FlakyBlob(data=b"", statuses=[])
    async with serve_https(app, tmp_path / "tls") as server:
        yield Served(f"{server.origin}/devstoreaccount1/models/m.zip?sv=1&sig=STORMSIG", server.ca_file, app)


async def test_storm_of_server_errors_then_success_installs(flaky_server: Served, model_root: Path) -> None:
    data = model_zip("onnx", padding=200_000)
    flaky_server.app.data = data
    flaky_server.app.statuses = [503, 500, 429, 502]
    settings = make_settings(model_root, ca_file=flaky_server.ca_file, download_attempts=6)
    hub = FakeEdgeHubClient(desired={"$version": 1, **desired_for(data, flaky_server.url, "storm-1.zip")})
    async with make_http_client(settings) as client, running_loader(settings, hub, client):
        await wait_state(hub, "ready", "storm-1")
    assert update(hub)["attempt"] == 5 and len(flaky_server.app.requests) == 5
    assert status_events(hub)[-1]["bytesDownloaded"] == len(data)


async def test_endless_storm_fails_with_download_failed_and_a_retry_time(
    flaky_server: Served, model_root: Path
) -> None:
    data = os.urandom(1000)
    flaky_server.app.data = data
    flaky_server.app.statuses = [503] * 10
    settings = make_settings(model_root, ca_file=flaky_server.ca_file, download_attempts=3, retry_after=3600)
    hub = FakeEdgeHubClient(desired={"$version": 1, **desired_for(data, flaky_server.url, "storm-2.zip")})
    async with make_http_client(settings) as client, running_loader(settings, hub, client):
        await wait_state(hub, "failed", "storm-2")
    mu = update(hub)
    assert mu["error"]["code"] == "download_failed" and mu["nextRetryAt"] is not None
    assert "STORMSIG" not in mu["error"]["message"]
    assert len(flaky_server.app.requests) == 3


async def test_resume_against_a_range_server(flaky_server: Served, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    flaky_server.app.data = data
    part = tmp_path / "a.part"
    part.write_bytes(data[:100_000])
    part.with_suffix(".json").write_text('{"etag": "\\"blob-1\\"", "total": 300000}')
    context = ssl.create_default_context(cafile=str(flaky_server.ca_file))

    async def nothing(done: int, total: int | None, attempt: int) -> None:
        del done, total, attempt

    async with httpx.AsyncClient(verify=context) as client:
        result = await Downloader(client, DownloadLimits(1 << 20, 0, 2, 0.01, 0.01, 0)).fetch(
            lambda: flaky_server.url, part, expected_size=None, on_progress=nothing
        )
    assert result.sha256 == hashlib.sha256(data).digest() and result.fetched == 200_000
    assert flaky_server.app.requests[0]["range"] == "bytes=100000-"
    assert flaky_server.app.requests[0]["if-match"] == '"blob-1"'
