"""Retry policy of the downloader for answers Azurite cannot be made to give (5xx, 429, Retry-After).

These use `httpx.MockTransport`: they test the retry decisions, not the network (that is
`test_download.py`, against Azurite).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from loader_module.download import Downloader, DownloadLimits, _Partial
from loader_module.errors import DiskFullError, DownloadFailedError

DATA = b"model-zip-bytes" * 1000
LIMITS = DownloadLimits(
    max_bytes=1 << 20, min_free_bytes=0, attempts=5, backoff_initial=0.001, backoff_max=0.01, backoff_jitter=0
)


LIMITS_8_MIB = DownloadLimits(
    max_bytes=8 << 20, min_free_bytes=0, attempts=1, backoff_initial=0.001, backoff_max=0.01, backoff_jitter=0
)


async def _nothing(done: int, total: int | None, attempt: int) -> None:
    del done, total, attempt


class _Body(httpx.AsyncByteStream):
    """A body that is really streamed (a `content=` body would be read eagerly by httpx)."""

    def __init__(self, data: bytes = DATA) -> None:
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._data), 4096):
            yield self._data[start : start + 4096]


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


class _Script:
    """A mock blob server whose answers a test scripts request by request (after which: serve ranges)."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answers:
            return self.answers.pop(0)
        start = int(request.headers.get("range", "bytes=0-")[6:].rstrip("-"))
        if start:
            headers = {"etag": '"e1"', "content-range": f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"}
            return httpx.Response(206, stream=_Body(DATA[start:]), headers=headers)
        return httpx.Response(
            200, stream=_Body(DATA), headers={"etag": '"e1"', "content-length": str(len(DATA))}
        )


async def _fetch(script: _Script, part: Path, limits: DownloadLimits = LIMITS) -> bytes:
    async with httpx.AsyncClient(transport=httpx.MockTransport(script)) as client:
        result = await Downloader(client, limits).fetch(
            lambda: "https://blob.example/m.zip?sig=x", part, expected_size=None, on_progress=_nothing
        )
    return result.sha256


def _half_part(tmp_path: Path) -> Path:
    """A part file holding the first half, as an earlier run left it."""
    part = tmp_path / "a.part"
    part.write_bytes(DATA[: len(DATA) // 2])
    part.with_suffix(".json").write_text(json.dumps({"etag": '"e1"', "total": len(DATA)}))
    return part


async def test_resume_sends_range_and_if_match(tmp_path: Path) -> None:
    script = _Script()
    assert await _fetch(script, _half_part(tmp_path)) == hashlib.sha256(DATA).digest()
    [request] = script.requests
    assert request.headers["range"] == f"bytes={len(DATA) // 2}-"
    assert request.headers["if-match"] == '"e1"'


async def test_server_ignoring_range_restarts_from_zero(tmp_path: Path) -> None:
    full = httpx.Response(200, stream=_Body(DATA), headers={"etag": '"e1"', "content-length": str(len(DATA))})
    script = _Script(full)
    assert await _fetch(script, _half_part(tmp_path)) == hashlib.sha256(DATA).digest()
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(206, headers={"content-range": "bytes 5-9/15000", "etag": '"e1"'}),
        httpx.Response(416, headers={"content-range": f"bytes */{len(DATA)}"}),
        httpx.Response(412),
    ],
    ids=["wrong-range", "416", "412"],
)
async def test_unusable_resume_answers_start_over(tmp_path: Path, answer: httpx.Response) -> None:
    script = _Script(answer)
    assert await _fetch(script, _half_part(tmp_path)) == hashlib.sha256(DATA).digest()
    assert "range" not in script.requests[-1].headers  # the retry downloads the whole blob


async def test_complete_part_is_not_requested_again(tmp_path: Path) -> None:
    part = tmp_path / "a.part"
    part.write_bytes(DATA)
    part.with_suffix(".json").write_text(json.dumps({"etag": '"e1"', "total": len(DATA)}))
    script = _Script()
    assert await _fetch(script, part) == hashlib.sha256(DATA).digest()
    assert script.requests == []


async def test_more_bytes_than_announced_fail(tmp_path: Path) -> None:
    liar = httpx.Response(200, stream=_Body(DATA), headers={"etag": '"e1"', "content-length": "100"})
    with pytest.raises(DownloadFailedError, match="more bytes"):
        await _fetch(_Script(liar), tmp_path / "a.part")


async def test_stream_ending_early_is_retried(tmp_path: Path) -> None:
    class _Short(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield DATA[:1000]

    short = httpx.Response(200, stream=_Short(), headers={"etag": '"e1"'})
    short.headers["content-length"] = str(len(DATA))
    script = _Script(short)
    assert await _fetch(script, tmp_path / "a.part") == hashlib.sha256(DATA).digest()
    assert script.requests[-1].headers["range"] == "bytes=1000-"


@pytest.mark.parametrize("value", ["0.02", "Wed, 21 Oct 2015 07:28:00 GMT"])
async def test_retry_after_is_honoured(tmp_path: Path, value: str) -> None:
    busy = httpx.Response(503, headers={"retry-after": value, "date": "Wed, 21 Oct 2015 07:27:59 GMT"})
    script = _Script(busy)
    assert await _fetch(script, tmp_path / "a.part") == hashlib.sha256(DATA).digest()
    assert len(script.requests) == 2


async def test_volume_filling_up_while_downloading_is_disk_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: object, data: memoryview) -> None:
        del self, data
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("loader_module.download._Partial.append", full)
    with pytest.raises(DiskFullError):
        await _fetch(_Script(), tmp_path / "a.part")


async def test_after_a_failed_block_no_later_block_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of 1, 2 and 4 MiB; the second fails while the third is already handed over (two in
    flight): the third must not land after the gap, so the part stays a valid prefix for a resume."""
    mib = 1024 * 1024
    data = os.urandom(7 * mib)
    appended: list[int] = []
    third_handed_over = threading.Event()
    append, hash_md5 = _Partial.append, _Partial.hash_md5

    def failing_second(self: _Partial, block: memoryview) -> None:
        appended.append(len(block))
        if len(appended) == 2:
            assert third_handed_over.wait(30), "the third block never reached the threads"
            raise OSError(errno.EIO, "Input/output error")
        append(self, block)

    def watching(self: _Partial, block: memoryview) -> None:
        hash_md5(self, block)
        if len(block) == 4 * mib:
            third_handed_over.set()

    monkeypatch.setattr(_Partial, "append", failing_second)
    monkeypatch.setattr(_Partial, "hash_md5", watching)

    def handle(request: httpx.Request) -> httpx.Response:
        del request
        headers = {"etag": '"e1"', "content-length": str(len(data))}
        return httpx.Response(200, stream=_Body(data), headers=headers)

    part = tmp_path / "a.part"
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        with pytest.raises(OSError, match="Input/output error"):
            await Downloader(client, LIMITS_8_MIB).fetch(
                lambda: "https://blob.example/m.zip?sig=x", part, expected_size=None, on_progress=_nothing
            )
    assert appended == [mib, 2 * mib]
    assert part.read_bytes() == data[:mib]


async def test_a_chunk_larger_than_a_block_is_split_across_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Transports may hand over any size: one chunk of 9 MiB + 5 bytes fills a 1 MiB block, a 2 MiB
    one and a 4 MiB one, then part of the next; the file and both digests are still the blob's."""
    mib = 1024 * 1024
    data = os.urandom(9 * mib + 5)
    blocks: list[int] = []
    hash_md5 = _Partial.hash_md5

    def counting(self: _Partial, block: memoryview) -> None:
        blocks.append(len(block))
        hash_md5(self, block)

    monkeypatch.setattr(_Partial, "hash_md5", counting)

    class _OneChunk(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield data

    def handle(request: httpx.Request) -> httpx.Response:
        del request
        return httpx.Response(
            200, stream=_OneChunk(), headers={"etag": '"e1"', "content-length": str(len(data))}
        )

    part = tmp_path / "a.part"
    limits = DownloadLimits(
        max_bytes=16 << 20, min_free_bytes=0, attempts=1, backoff_initial=0, backoff_max=0, backoff_jitter=0
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        result = await Downloader(client, limits).fetch(
            lambda: "https://blob.example/m.zip?sig=x", part, expected_size=len(data), on_progress=_nothing
        )
    assert blocks == [mib, 2 * mib, 4 * mib, 2 * mib + 5]
    assert part.read_bytes() == data
    assert (result.md5, result.sha256) == (hashlib.md5(data).digest(), hashlib.sha256(data).digest())
