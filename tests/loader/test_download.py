"""Downloads against real Azurite over HTTPS, with faults injected by the loopback proxy."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_tools.azurite import Azurite
from edge_tools.faultproxy import FaultProxy, Policy
from loader_module.download import Downloader, DownloadLimits, DownloadResult
from loader_module.edge import make_http_client
from loader_module.errors import (
    BlobNotFoundError,
    ChecksumMismatchError,
    DiskFullError,
    DownloadFailedError,
    SasExpiredError,
    TooLargeError,
    TransientDownloadError,
)
from tests.loader.conftest import make_settings

pytestmark = pytest.mark.integration

SIZE = 3 * 1024 * 1024 + 12345
LIMITS = DownloadLimits(
    max_bytes=64 * 1024 * 1024,
    min_free_bytes=0,
    attempts=4,
    backoff_initial=0.01,
    backoff_max=0.05,
    backoff_jitter=0.0,
)
HEADER_ALLOWANCE = 4096  # response headers per connection, counted by the proxy


async def _nothing(done: int, total: int | None, attempt: int) -> None:
    del done, total, attempt


def _blob(azurite: Azurite, data: bytes | None = None) -> tuple[str, bytes]:
    data = data if data is not None else os.urandom(SIZE)
    name = f"dl/{uuid.uuid4().hex}.zip"
    azurite.upload("models", name, data)
    return name, data


def _check(result: DownloadResult, data: bytes) -> None:
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).digest()
    assert result.md5 == hashlib.md5(data, usedforsecurity=False).digest()
    assert result.path.read_bytes() == data


async def test_full_download_hashes_while_streaming(
    azurite: Azurite, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    name, data = _blob(azurite)
    seen: list[int] = []

    async def progress(done: int, total: int | None, attempt: int) -> None:
        assert total in (None, len(data)) and attempt == 1  # unknown until the response arrives
        seen.append(done)

    result = await Downloader(http, LIMITS).fetch(
        lambda: azurite.sas_url("models", name),
        tmp_path / "a.part",
        expected_size=len(data),
        on_progress=progress,
    )
    _check(result, data)
    assert result.attempts == 1 and result.fetched == len(data)
    assert seen == sorted(seen) and seen[-1] == len(data) and len(seen) >= 3


@pytest.mark.parametrize("fault", ["cut", "reset"])
async def test_connection_lost_mid_download_resumes_with_range(
    azurite: Azurite, proxy: FaultProxy, http: httpx.AsyncClient, tmp_path: Path, fault: str
) -> None:
    name, data = _blob(azurite)
    at = SIZE // 2
    policy = Policy(cut_after=at) if fault == "cut" else Policy(reset_after=at)
    proxy.set_policies([policy, Policy()])
    result = await Downloader(http, LIMITS).fetch(
        lambda: azurite.sas_url("models", name, port=proxy.port),
        tmp_path / "a.part",
        expected_size=None,
        on_progress=_nothing,
    )
    _check(result, data)
    assert result.attempts == 2 and proxy.connections == 2
    assert result.fetched <= 1.05 * len(data)  # the second attempt did not start from 0
    if fault == "cut":
        # A RST also drops bytes the client kernel had received, so only a FIN bounds the wire bytes.
        assert proxy.downstream_bytes <= 1.05 * len(data) + 2 * HEADER_ALLOWANCE


async def test_reported_progress_is_never_ahead_of_the_bytes_on_the_volume(
    azurite: Azurite, http: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loader killed right after a report must find every reported byte in its part file (a slow
    volume used to leave the block just handed to the writer counted but not written)."""
    name, data = _blob(azurite)
    part = tmp_path / "a.part"
    write = Downloader._write

    def slow_write(self: Downloader, partial: Any, block: memoryview) -> None:
        time.sleep(0.05)  # a slow volume: the write is still running when the next report goes out
        write(self, partial, block)

    monkeypatch.setattr(Downloader, "_write", slow_write)
    behind: list[tuple[int, int]] = []

    async def progress(done: int, total: int | None, attempt: int) -> None:
        del total, attempt
        on_disk = part.stat().st_size if part.exists() else 0
        if done > on_disk:
            behind.append((done, on_disk))

    result = await Downloader(http, LIMITS).fetch(
        lambda: azurite.sas_url("models", name), part, expected_size=len(data), on_progress=progress
    )
    _check(result, data)
    assert behind == []


async def test_stalled_stream_times_out_and_resumes(
    azurite: Azurite, proxy: FaultProxy, tmp_path: Path
) -> None:
    name, data = _blob(azurite)
    proxy.set_policies([Policy(stall_after=SIZE // 3), Policy()])
    settings = make_settings(tmp_path, ca_file=azurite.ca_file, read_timeout=0.5)
    async with make_http_client(settings) as client:
        result = await Downloader(client, LIMITS).fetch(
            lambda: azurite.sas_url("models", name, port=proxy.port),
            tmp_path / "a.part",
            expected_size=len(data),
            on_progress=_nothing,
        )
    _check(result, data)
    assert result.attempts == 2


async def test_blob_replaced_between_attempts_restarts_from_zero(
    azurite: Azurite, proxy: FaultProxy, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    name, old = _blob(azurite)
    new = os.urandom(SIZE - 1000)
    proxy.set_policies([Policy(cut_after=SIZE // 2), Policy()])

    async def replace_before_second_attempt(done: int, total: int | None, attempt: int) -> None:
        del done, total
        if attempt == 2 and replaced.is_set() is False:
            replaced.set()
            await asyncio.to_thread(azurite.upload, "models", name, new)

    replaced = asyncio.Event()
    result = await Downloader(http, LIMITS).fetch(
        lambda: azurite.sas_url("models", name, port=proxy.port),
        tmp_path / "a.part",
        expected_size=None,
        on_progress=replace_before_second_attempt,
    )
    assert replaced.is_set()
    _check(result, new)  # never a mix of old and new bytes
    assert result.attempts == 3  # cut, 412 on If-Match, full download of the new blob
    assert old[:100] != new[:100]


async def test_partial_file_from_an_earlier_run_is_resumed(
    azurite: Azurite, proxy: FaultProxy, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    name, data = _blob(azurite)
    part = tmp_path / "a.part"
    proxy.set_policies([Policy(cut_after=SIZE // 2), Policy()])
    downloader = Downloader(http, LIMITS)
    one_attempt = Downloader(http, DownloadLimits(**{**LIMITS.__dict__, "attempts": 1}))
    with pytest.raises(DownloadFailedError):
        await one_attempt.fetch(
            lambda: azurite.sas_url("models", name, port=proxy.port),
            part,
            expected_size=None,
            on_progress=_nothing,
        )
    have = part.stat().st_size
    assert 0 < have < len(data)
    result = await downloader.fetch(
        lambda: azurite.sas_url("models", name), part, expected_size=None, on_progress=_nothing
    )
    _check(result, data)
    assert result.fetched == len(data) - have


async def test_expired_sas_fails_at_once_without_retrying(
    azurite: Azurite, proxy: FaultProxy, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    from datetime import timedelta

    name, _ = _blob(azurite, b"x" * 1000)
    url = azurite.sas_url("models", name, port=proxy.port, expires_in=timedelta(minutes=-5))
    with pytest.raises(SasExpiredError) as caught:
        await Downloader(http, LIMITS).fetch(
            lambda: url, tmp_path / "a.part", expected_size=None, on_progress=_nothing
        )
    assert proxy.connections == 1
    assert "sig=" not in str(caught.value) and "se=" not in str(caught.value)


async def test_missing_blob_is_not_found_without_retrying(
    azurite: Azurite, proxy: FaultProxy, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    _blob(azurite, b"x")  # the container exists
    url = azurite.sas_url("models", "dl/missing.zip", port=proxy.port)
    with pytest.raises(BlobNotFoundError):
        await Downloader(http, LIMITS).fetch(
            lambda: url, tmp_path / "a.part", expected_size=None, on_progress=_nothing
        )
    assert proxy.connections == 1


async def test_blob_over_the_size_limit_is_refused_before_the_body(
    azurite: Azurite, proxy: FaultProxy, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    name, data = _blob(azurite)
    small = DownloadLimits(**{**LIMITS.__dict__, "max_bytes": len(data) - 1})
    with pytest.raises(TooLargeError):
        await Downloader(http, small).fetch(
            lambda: azurite.sas_url("models", name, port=proxy.port),
            tmp_path / "a.part",
            expected_size=None,
            on_progress=_nothing,
        )
    assert not (tmp_path / "a.part").exists()  # nothing of the body written, and the empty part dropped
    with pytest.raises(TooLargeError):  # a too-large Size is refused without a request at all
        await Downloader(http, small).fetch(
            lambda: azurite.sas_url("models", name, port=proxy.port),
            tmp_path / "a.part",
            expected_size=len(data),
            on_progress=_nothing,
        )
    assert proxy.connections == 1


async def test_size_differing_from_desired_is_a_mismatch(
    azurite: Azurite, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    name, data = _blob(azurite, b"y" * 5000)
    with pytest.raises(ChecksumMismatchError):
        await Downloader(http, LIMITS).fetch(
            lambda: azurite.sas_url("models", name),
            tmp_path / "a.part",
            expected_size=4999,
            on_progress=_nothing,
        )


async def test_not_enough_free_disk_is_refused(
    azurite: Azurite, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    name, _ = _blob(azurite, b"z" * 5000)
    greedy = DownloadLimits(**{**LIMITS.__dict__, "min_free_bytes": 1 << 60})
    with pytest.raises(DiskFullError):
        await Downloader(http, greedy).fetch(
            lambda: azurite.sas_url("models", name),
            tmp_path / "a.part",
            expected_size=None,
            on_progress=_nothing,
        )


async def test_https_needs_the_configured_ca(azurite: Azurite, tmp_path: Path) -> None:
    name, data = _blob(azurite, b"w" * 5000)
    url = azurite.sas_url("models", name)
    async with make_http_client(make_settings(tmp_path)) as system_cas_only:
        with pytest.raises(DownloadFailedError, match="network error") as failed:
            await Downloader(system_cas_only, DownloadLimits(**{**LIMITS.__dict__, "attempts": 2})).fetch(
                lambda: url, tmp_path / "a.part", expected_size=None, on_progress=_nothing
            )
    # The reason is kept for the device log, not in the message (which reaches the twin).
    cause = failed.value.__cause__
    assert isinstance(cause, TransientDownloadError) and "CERTIFICATE_VERIFY_FAILED" in (cause.detail or "")
    async with make_http_client(make_settings(tmp_path, ca_file=azurite.ca_file)) as with_ca:
        result = await Downloader(with_ca, LIMITS).fetch(
            lambda: url, tmp_path / "b.part", expected_size=None, on_progress=_nothing
        )
    _check(result, data)
