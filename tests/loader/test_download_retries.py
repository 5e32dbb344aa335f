"""Retry policy of the downloader for answers Azurite cannot be made to give (5xx, 429, Retry-After).

These use `httpx.MockTransport`: they test the retry decisions, not the network (that is
`test_download.py`, against Azurite).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from loader_module.download import Downloader, DownloadLimits
from loader_module.errors import DownloadFailedError

DATA = b"model-zip-bytes" * 1000
LIMITS = DownloadLimits(
    max_bytes=1 << 20, min_free_bytes=0, attempts=5, backoff_initial=0.001, backoff_max=0.01, backoff_jitter=0
)


async def _nothing(done: int, total: int | None, attempt: int) -> None:
    del done, total, attempt


class _Body(httpx.AsyncByteStream):
    """A body that is really streamed (a `content=` body would be read eagerly by httpx)."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(DATA), 4096):
            yield DATA[start : start + 4096]


def _server(statuses: list[int], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = statuses.pop(0) if statuses else 200
        if status != 200:
            return httpx.Response(status, headers={"retry-after": "0"})
        return httpx.Response(200, stream=_Body(), headers={"etag": '"e1"', "content-length": str(len(DATA))})

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("storm", [[503, 500, 502], [429, 408], [504]])
async def test_server_errors_are_retried_until_success(tmp_path: Path, storm: list[int]) -> None:
    seen: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=_server(list(storm), seen)) as client:
        result = await Downloader(client, LIMITS).fetch(
            lambda: "https://blob.example/m.zip?sig=x",
            tmp_path / "a.part",
            expected_size=None,
            on_progress=_nothing,
        )
    assert result.sha256 == hashlib.sha256(DATA).digest()
    assert result.attempts == len(storm) + 1 == len(seen)


async def test_attempts_are_bounded_then_download_failed(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=_server([503] * 50, seen)) as client:
        with pytest.raises(DownloadFailedError, match="5 attempts"):
            await Downloader(client, LIMITS).fetch(
                lambda: "https://blob.example/m.zip?sig=x",
                tmp_path / "a.part",
                expected_size=None,
                on_progress=_nothing,
            )
    assert len(seen) == LIMITS.attempts


async def test_other_client_errors_are_final(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=_server([400], seen)) as client:
        with pytest.raises(DownloadFailedError, match="unexpected HTTP 400"):
            await Downloader(client, LIMITS).fetch(
                lambda: "https://blob.example/m.zip?sig=x",
                tmp_path / "a.part",
                expected_size=None,
                on_progress=_nothing,
            )
    assert len(seen) == 1


async def test_each_attempt_uses_the_newest_url(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    urls = iter(["https://blob.example/m.zip?sig=old", "https://blob.example/m.zip?sig=new"])
    async with httpx.AsyncClient(transport=_server([503], seen)) as client:
        await Downloader(client, LIMITS).fetch(
            lambda: next(urls), tmp_path / "a.part", expected_size=None, on_progress=_nothing
        )
    assert [request.url.params["sig"] for request in seen] == ["old", "new"]
