"""A server that sends more than it may is cut off while streaming (issue 17, item 1).

Without `Content-Length` (a chunked answer) nothing can be refused before the body: the loader counts
bytes as they arrive and stops at the first of `Size`, `LOADER_MAX_DOWNLOAD_BYTES` and the free-space
floor, never writing a byte beyond it. The flood is 64 MiB from a real HTTPS server.
"""

from __future__ import annotations

import shutil
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from loader_module.download import FLUSH_BYTES, Downloader, DownloadLimits
from loader_module.edge import make_http_client
from loader_module.errors import ChecksumMismatchError, DiskFullError, LoaderError, TooLargeError
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import desired_for, make_settings
from tests.loader.https_server import HttpsServer, Receive, Send, serve_https
from tests.loader.service_helpers import running_loader, update, wait_state

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
FLOOD = 64 * MiB
CHUNK = 64 * 1024


@dataclass
class ChunkedFlood:
    """Answers every GET with `size` bytes, chunked (no Content-Length), in 64 KiB chunks."""

    size: int = FLOOD

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        del receive
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"etag", b'"flood"')]})
        block = b"\xab" * CHUNK
        for _ in range(self.size // CHUNK):
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def flood(tmp_path: Path) -> AsyncIterator[HttpsServer]:
    async with serve_https(ChunkedFlood(), tmp_path / "tls") as server:
        yield server


@dataclass
class Progress:
    most: int = 0

    async def __call__(self, done: int, total: int | None, attempt: int) -> None:
        del total, attempt
        self.most = max(self.most, done)


async def _fetch(
    server: HttpsServer, part: Path, *, expected_size: int | None, max_bytes: int, min_free: int = 0
) -> tuple[LoaderError, Progress]:
    progress = Progress()
    context = ssl.create_default_context(cafile=str(server.ca_file))
    async with httpx.AsyncClient(verify=context, timeout=10.0) as client:
        downloader = Downloader(client, DownloadLimits(max_bytes, min_free, 3, 0.01, 0.01, 0))
        with pytest.raises(LoaderError) as failed:
            url = f"{server.origin}/m.zip?sig=X"
            await downloader.fetch(lambda: url, part, expected_size=expected_size, on_progress=progress)
    return failed.value, progress


async def test_chunked_flood_stops_at_size(flood: HttpsServer, tmp_path: Path) -> None:
    part = tmp_path / "d" / "a.part"
    error, progress = await _fetch(flood, part, expected_size=1000, max_bytes=8 * MiB)
    assert isinstance(error, ChecksumMismatchError) and "Size" in str(error)
    assert progress.most <= 1000
    assert not part.exists() or part.stat().st_size <= 1000


async def test_chunked_flood_stops_at_the_download_limit(flood: HttpsServer, tmp_path: Path) -> None:
    part = tmp_path / "d" / "a.part"
    error, progress = await _fetch(flood, part, expected_size=None, max_bytes=8 * MiB)
    assert isinstance(error, TooLargeError)
    assert progress.most <= 8 * MiB
    assert not part.exists(), "bytes over the limit are of no use: the part is dropped"


async def test_chunked_flood_stops_at_the_free_space_floor(flood: HttpsServer, tmp_path: Path) -> None:
    part = tmp_path / "d" / "a.part"
    part.parent.mkdir()
    # Leave 4 MiB above the floor: the flood would take 64 MiB.
    floor = shutil.disk_usage(part.parent).free - 4 * MiB
    error, progress = await _fetch(flood, part, expected_size=None, max_bytes=1 << 40, min_free=floor)
    assert isinstance(error, DiskFullError)
    # The floor is checked before each block is written; other writers on the disk can only lower it.
    assert progress.most <= 4 * MiB + FLUSH_BYTES


async def test_service_reports_a_flood_past_size_as_a_mismatch_and_keeps_nothing(
    flood: HttpsServer, model_root: Path
) -> None:
    settings = make_settings(model_root, ca_file=flood.ca_file, max_download_bytes=8 * MiB)
    props = desired_for(b"x" * 1000, f"{flood.origin}/m/flood.zip?sig=FLOODSIG", "flood-1.zip", size=1000)
    hub = FakeEdgeHubClient(desired={"$version": 1, **props})
    async with make_http_client(settings) as client, running_loader(settings, hub, client):
        await wait_state(hub, "failed", "flood-1")
        failed = update(hub)
        assert failed["error"]["code"] == "checksum_mismatch" and failed.get("nextRetryAt") is None
        assert failed["bytesDone"] <= 1000
    assert list((model_root / ".downloads").iterdir()) == []
