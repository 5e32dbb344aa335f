"""Streaming, resumable, hash-as-you-go download of one ZIP to `.downloads/` (constant memory).

A partial download is `<key>.part` plus `<key>.json` (the blob's ETag and size). A resume asks for
`Range: bytes=<have>-` with `If-Match: <etag>`: a 412 means the blob was replaced, so the part is dropped
and the download starts again from 0 (If-Range is ignored by Azurite, so it is not used). Retries with
exponential backoff and jitter come from `stamina`; 403 and 404 are final at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import logging
import os
import re
import shutil
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO

import httpx
import stamina
from pydantic import BaseModel, ValidationError

from edge_shared.fsutil import atomic_write_text
from edge_shared.redaction import redact, redact_url
from loader_module.errors import (
    BlobNotFoundError,
    ChecksumMismatchError,
    DiskFullError,
    DownloadFailedError,
    LoaderError,
    SasExpiredError,
    TooLargeError,
    TransientDownloadError,
)

logger = logging.getLogger(__name__)

#: Longest time received bytes wait in memory before they are written (slow links).
FLUSH_SECONDS = 1.0
#: The first block of each attempt; blocks then double up to BLOCK_BYTES. Small first blocks keep
#: progress moving on small models; large later ones cost fewer thread hand-offs per MiB (each one
#: waits for the GIL while the event loop runs), measured by the benchmark's download section.
FLUSH_BYTES = 1024 * 1024
BLOCK_BYTES = 4 * 1024 * 1024
#: Blocks handed to the writer and MD5 threads and not yet done: a slow disk or a descheduled thread
#: does not stop the network read at once. With 2, on 2 busy cores (load average 5-7) the event loop
#: waited for the threads 280-340 ms per 256 MiB; with 4, 95-330 ms. Memory: this many blocks plus
#: the one being received (5 x 4 MiB).
BLOCKS_IN_FLIGHT = 4
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: What every connection, TLS, timeout or protocol failure reports. The twin must not tell a refused
#: port from one without TLS or one with an untrusted certificate: whoever may write desired properties
#: could map internal addresses through it. HTTP statuses are still reported: a server answered, and
#: 403/404 have their own codes anyway. The device log keeps each attempt's own reason.
NETWORK_ERROR = "network error: no trusted HTTPS answer (connection, TLS or timeout; see the device log)"

#: `(bytes_done, bytes_total, attempt)`, awaited after every flush (a block of 1-4 MiB, or a second's
#: worth) and at each attempt start.
ProgressCallback = Callable[[int, int | None, int], Awaitable[None]]


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int
    min_free_bytes: int
    attempts: int
    backoff_initial: float
    backoff_max: float
    backoff_jitter: float
    #: Redirects followed per request, same scheme only (0: a redirect is an unexpected answer).
    max_redirects: int = 0


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    size: int
    md5: bytes
    sha256: bytes
    #: Body bytes received from the network in this call, over all attempts (resume efficiency).
    fetched: int
    attempts: int


@dataclass
class _Received:
    """Body bytes received over all attempts, failed ones included."""

    bytes: int = 0


class _Blocks:
    """Received bytes gathered into preallocated blocks, each written + SHA-256'd on one thread and
    MD5'd on another, in arrival order, at most `depth` blocks in flight: the network read goes on while
    the disk or a digest catches up. The `depth + 1` buffers are reused for the whole attempt, so a
    block costs one copy into a warm buffer (no allocation, no page faults) and memory is fixed."""

    def __init__(
        self, write: Callable[[memoryview], None], md5: Callable[[memoryview], None], depth: int
    ) -> None:
        self._steps = (
            (ThreadPoolExecutor(1, thread_name_prefix="download-write"), write),
            (ThreadPoolExecutor(1, thread_name_prefix="download-md5"), md5),
        )
        self._spare = [memoryview(bytearray(BLOCK_BYTES)) for _ in range(depth)]
        self._block = memoryview(bytearray(BLOCK_BYTES))
        #: Bytes gathered in `_block`, not yet handed over.
        self.held = 0
        self._pending: deque[tuple[asyncio.Future[list[None]], memoryview]] = deque()

    def gather(self, chunk: bytes | memoryview, size: int) -> int:
        """Copy as much of `chunk` as fits into the current block of `size` bytes; how much that was."""
        taken = min(len(chunk), min(size, len(self._block)) - self.held)
        self._block[self.held : self.held + taken] = chunk if taken == len(chunk) else chunk[:taken]
        self.held += taken
        return taken

    async def put(self) -> None:
        """Hand the gathered bytes to both threads and start an empty block, waiting for a free buffer
        if `depth` blocks are in flight. Raises an earlier block's failure, which ends the attempt:
        nothing more is gathered (the current buffer is then still the one just handed over)."""
        loop = asyncio.get_running_loop()
        block = self._block[: self.held]
        steps = (loop.run_in_executor(pool, step, block) for pool, step in self._steps)
        self._pending.append((asyncio.gather(*steps), self._block))
        self.held = 0
        if not self._spare:
            done, buffer = self._pending[0]
            try:
                # Shielded: if this task is cancelled, the block stays pending and `drain` waits for it.
                await asyncio.shield(done)
            finally:
                if done.done():
                    self._pending.popleft()
                    self._spare.append(buffer)  # both threads are done with it
        self._block = self._spare.pop()

    async def drain(self) -> None:
        """Wait for every block handed over; then raise the first failure, if any."""
        results = await asyncio.gather(*(done for done, _ in self._pending), return_exceptions=True)
        self._spare.extend(buffer for _, buffer in self._pending)
        self._pending.clear()
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def close(self) -> None:
        for pool, _ in self._steps:
            pool.shutdown(wait=False)  # idle by now: `drain` waited for their work


class _PartMeta(BaseModel):
    etag: str
    total: int | None


class _Partial:
    """The part file, its resume metadata and running hashes; all methods block (run them in a thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta_path = path.with_suffix(".json")
        self.offset = 0
        self.etag: str | None = None
        self.total: int | None = None
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self._handle: IO[bytes] | None = None
        #: A block failed to be written in this attempt: later ones are not (no gap in the file).
        self.write_failed = False

    def load(self) -> None:
        """Adopt an earlier part (re-hashing it from disk) or start empty."""
        try:
            meta = _PartMeta.model_validate_json(self.meta_path.read_bytes())
        except (FileNotFoundError, ValidationError, ValueError):
            self.reset()
            return
        if not self.path.is_file():
            self.reset()
            return
        self.etag, self.total = meta.etag, meta.total
        with self.path.open("rb") as handle:
            while block := handle.read(FLUSH_BYTES):
                self._md5.update(block)
                self._sha256.update(block)
                self.offset += len(block)
        if self.total is not None and self.offset > self.total:
            self.reset()

    def reset(self) -> None:
        self.close()
        self.offset, self.etag, self.total = 0, None, None
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        with contextlib.suppress(FileNotFoundError):
            self.meta_path.unlink()

    def remember(self, etag: str, total: int | None) -> None:
        self.etag, self.total = etag, total
        atomic_write_text(self.meta_path, _PartMeta(etag=etag, total=total).model_dump_json())

    def open(self) -> None:
        self._handle = self.path.open("ab")
        self.write_failed = False

    def append(self, data: memoryview) -> None:
        """Write `data` and fold it into SHA-256; MD5 is `hash_md5`'s, run beside it in another thread."""
        assert self._handle is not None
        self._handle.write(data)
        self._handle.flush()  # into the kernel: a killed process loses nothing `offset` counts
        self._sha256.update(data)
        self.offset += len(data)

    def hash_md5(self, data: memoryview) -> None:
        # A failed `append` ends the download (never retried in this call), and a later call
        # re-hashes the part from disk, so an MD5 ahead of the file is never used.
        self._md5.update(data)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            self._handle.close()
            self._handle = None

    def finish(self) -> tuple[bytes, bytes]:
        self.close()
        with self.path.open("rb") as handle:
            os.fsync(handle.fileno())
        return self._md5.digest(), self._sha256.digest()


def discard(part_path: Path) -> None:
    """Remove a part file and its metadata (after a checksum mismatch, or when the target changed)."""
    for path in (part_path, part_path.with_suffix(".json")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _retry_hook(exc: Exception) -> bool | float:
    if isinstance(exc, TransientDownloadError):
        return exc.retry_after if exc.retry_after is not None else True
    return False


def _retry_after(response: httpx.Response, cap: float) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        date = response.headers.get("date")
        now = parsedate_to_datetime(date) if date else None
        if now is None:
            return None
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), cap)


class Downloader:
    """Downloads with an injected `httpx.AsyncClient` (TLS trust and timeouts are configured on it)."""

    def __init__(self, client: httpx.AsyncClient, limits: DownloadLimits) -> None:
        self._client = client
        self._limits = limits

    async def fetch(
        self,
        url: Callable[[], str],
        part_path: Path,
        *,
        expected_size: int | None,
        on_progress: ProgressCallback,
    ) -> DownloadResult:
        """Download to `part_path` (resuming it if possible); `url()` gives the newest URL per attempt."""
        if expected_size is not None and expected_size > self._limits.max_bytes:
            raise TooLargeError(f"Size {expected_size} exceeds the limit of {self._limits.max_bytes} bytes")
        partial = _Partial(part_path)
        await asyncio.to_thread(partial.load)
        if expected_size is not None:
            await asyncio.to_thread(self._check_space, expected_size, partial)  # before any request
        if partial.offset:
            logger.info("resuming a partial download", extra={"bytes_have": partial.offset})
        received = _Received()
        attempts = 0
        try:
            async for attempt in stamina.retry_context(
                on=_retry_hook,
                attempts=self._limits.attempts,
                timeout=None,
                wait_initial=self._limits.backoff_initial,
                wait_max=self._limits.backoff_max,
                wait_jitter=self._limits.backoff_jitter,
            ):
                with attempt:
                    attempts = attempt.num
                    try:
                        await self._attempt(url(), partial, expected_size, attempts, on_progress, received)
                    except TransientDownloadError as exc:
                        logger.warning(
                            "download attempt failed",
                            extra={
                                "attempt": attempts,
                                "reason": exc.detail or str(exc),
                                "bytes_have": partial.offset,
                            },
                        )
                        raise
        except TransientDownloadError as exc:
            raise DownloadFailedError(f"gave up after {attempts} attempts: {exc}") from exc
        except (TooLargeError, ChecksumMismatchError):
            # A final verdict on this blob: what was received of it is of no use to a later attempt.
            await asyncio.to_thread(partial.close)
            await asyncio.to_thread(discard, part_path)
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(f"the model volume is full: {exc.strerror}") from exc
            raise
        finally:
            await asyncio.to_thread(partial.close)
        md5, sha256 = await asyncio.to_thread(partial.finish)
        return DownloadResult(part_path, partial.offset, md5, sha256, received.bytes, attempts)

    async def _attempt(
        self,
        url: str,
        partial: _Partial,
        expected_size: int | None,
        attempt: int,
        on_progress: ProgressCallback,
        received: _Received,
    ) -> None:
        """One GET, counting body bytes into `received`. Raises `TransientDownloadError` to be retried."""
        if partial.total is not None and partial.offset == partial.total and partial.etag is not None:
            return  # complete already: never ask for `bytes=<size>-`
        headers: dict[str, str] = {}
        if partial.offset and partial.etag:
            headers = {"Range": f"bytes={partial.offset}-", "If-Match": partial.etag}
        elif partial.offset:
            await asyncio.to_thread(partial.reset)
        await on_progress(partial.offset, partial.total, attempt)
        try:
            async with self._open(url, headers) as response:
                await self._accept(response, partial, expected_size)
                await asyncio.to_thread(partial.open)
                # Chunks are copied into preallocated blocks as they arrive (one copy); blocks are
                # hashed and written in two threads while the next ones arrive (hashlib releases the
                # GIL), so hashing costs little throughput; blocks stay in order.
                size = FLUSH_BYTES
                start = position = partial.offset  # bytes written, being written and held
                # The smallest bound; past it `overflow_error` says which one was crossed.
                bound = min(
                    b for b in (self._limits.max_bytes, expected_size, partial.total) if b is not None
                )
                blocks = _Blocks(functools.partial(self._write, partial), partial.hash_md5, BLOCKS_IN_FLIGHT)
                loop = asyncio.get_running_loop()
                flush_at = loop.time() + FLUSH_SECONDS
                try:
                    async for chunk in response.aiter_raw():
                        position += len(chunk)
                        # Checked before the chunk is kept: no byte past a bound is ever written, and a
                        # chunked answer (no Content-Length) cannot fill the volume.
                        if position > bound:
                            overflow = overflow_error(
                                position,
                                max_bytes=self._limits.max_bytes,
                                expected_size=expected_size,
                                announced=partial.total,
                            )
                            if overflow is not None:
                                raise overflow
                        taken = 0
                        while True:  # more than once when the chunk is larger than the block's room
                            taken += blocks.gather(memoryview(chunk)[taken:] if taken else chunk, size)
                            # Flush a full block, or whatever arrived within FLUSH_SECONDS: on a slow
                            # link progress still moves and a cut loses seconds of data, not a block.
                            if blocks.held >= size or (blocks.held and loop.time() >= flush_at):
                                await blocks.put()  # raises an earlier block's failure
                                size = min(2 * size, BLOCK_BYTES)
                                flush_at = loop.time() + FLUSH_SECONDS
                                # What is on the volume, not what arrived: blocks still with the writer
                                # are reported at a later flush, so a crash never loses reported bytes.
                                await on_progress(partial.offset, partial.total, attempt)
                            if taken == len(chunk):
                                break
                finally:
                    received.bytes += position - start
                    try:
                        # Bytes that arrived before a cut are a valid prefix: keep them for the resume.
                        if blocks.held and not partial.write_failed:
                            await blocks.put()
                        await blocks.drain()
                    finally:
                        blocks.close()
                    await asyncio.to_thread(partial.close)
        except httpx.TransportError as exc:
            raise TransientDownloadError(
                NETWORK_ERROR, detail=f"{type(exc).__name__}: {_describe(exc)}"
            ) from exc
        await on_progress(partial.offset, partial.total, attempt)
        if partial.total is not None and partial.offset < partial.total:
            raise TransientDownloadError(f"stream ended at {partial.offset} of {partial.total} bytes")

    @contextlib.asynccontextmanager
    async def _open(self, url: str, headers: dict[str, str]) -> AsyncIterator[httpx.Response]:
        """GET `url`, following up to `max_redirects` redirects to the same scheme. The final answer
        goes through every check as if it were the first (status, range, sizes, digests); the Range and
        If-Match of a resume go along."""
        for _ in range(self._limits.max_redirects + 1):
            async with self._client.stream("GET", url, headers=headers) as response:
                if not response.is_redirect:
                    yield response
                    return
                url = redirect_target(response)
        raise DownloadFailedError(f"more than {self._limits.max_redirects} redirects")

    async def _accept(self, response: httpx.Response, partial: _Partial, expected_size: int | None) -> None:
        """Check the status and headers before the body is read; may reset the partial file."""
        status = response.status_code
        where = redact_url(str(response.request.url))
        if status == 403:
            raise SasExpiredError(f"403 from {where}: the SAS is expired or invalid; a new URL is needed")
        if status == 404:
            raise BlobNotFoundError(f"404 from {where}: no such blob")
        if status == 412:
            await asyncio.to_thread(partial.reset)
            raise TransientDownloadError("the blob changed since the partial download (412); starting over")
        if status == 416:
            await asyncio.to_thread(partial.reset)
            raise TransientDownloadError("the server refused the resume range (416); starting over")
        if status in _RETRY_STATUS:
            raise TransientDownloadError(
                f"HTTP {status} from {where}", retry_after=_retry_after(response, self._limits.backoff_max)
            )
        if status == 200:
            if partial.offset:
                await asyncio.to_thread(partial.reset)
            total = _int_header(response, "content-length")
        elif status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
            if match is None or int(match.group(1)) != partial.offset:
                await asyncio.to_thread(partial.reset)
                raise TransientDownloadError("the server answered a different range; starting over")
            total = None if match.group(3) == "*" else int(match.group(3))
        else:
            raise DownloadFailedError(f"unexpected HTTP {status} from {where}")
        if total is not None:
            self._check_size(total, expected_size, partial)
        etag = response.headers.get("etag")
        if etag:
            await asyncio.to_thread(partial.remember, etag, total)
        else:
            partial.etag, partial.total = None, total

    def _write(self, partial: _Partial, block: memoryview) -> None:
        """Append `block` unless that would take the volume below the free-space floor (blocking).
        After a failed block nothing more is written: the file stays a valid prefix for a resume."""
        if partial.write_failed:
            return  # that failure ends the download; `_Blocks` raises it
        try:
            free = shutil.disk_usage(partial.path.parent).free
            if free - len(block) < self._limits.min_free_bytes:
                raise DiskFullError(
                    f"writing {len(block)} more bytes would leave less than {self._limits.min_free_bytes} "
                    "free"
                )
            partial.append(block)
        except BaseException:
            partial.write_failed = True
            raise

    def _check_size(self, total: int, expected_size: int | None, partial: _Partial) -> None:
        if total > self._limits.max_bytes:
            raise TooLargeError(f"the blob has {total} bytes, over the limit of {self._limits.max_bytes}")
        if expected_size is not None and total != expected_size:
            raise ChecksumMismatchError(f"the blob has {total} bytes but Size says {expected_size}")
        self._check_space(total, partial)

    def _check_space(self, total: int, partial: _Partial) -> None:
        free = shutil.disk_usage(partial.path.parent).free
        needed = total - partial.offset + self._limits.min_free_bytes
        if free < needed:
            raise DiskFullError(
                f"{total - partial.offset} bytes to download but only {free} free "
                f"(keeping {self._limits.min_free_bytes} spare)"
            )


def redirect_target(response: httpx.Response) -> str:
    """Where a redirect leads, if it may be followed: never to another scheme (no https -> http)."""
    current = response.request.url
    try:
        target = current.join(response.headers["location"])
    except httpx.InvalidURL as exc:
        raise DownloadFailedError(f"HTTP {response.status_code} redirects to an invalid URL") from exc
    if target.scheme != current.scheme:
        raise DownloadFailedError(
            f"HTTP {response.status_code} redirects from {current.scheme} to {target.scheme or 'nothing'}; "
            "refused (only redirects to the same scheme are followed)"
        )
    logger.info(
        "following a redirect",
        extra={"status": response.status_code, "location": redact_url(str(target))},
    )
    return str(target)


def overflow_error(
    position: int, *, max_bytes: int, expected_size: int | None, announced: int | None
) -> LoaderError | None:
    """The error for a body that has reached `position` bytes, if that is past one of its bounds: what
    the server announced (a lying server, retried), `Size` (a mismatch), the download limit."""
    if announced is not None and position > announced:
        return DownloadFailedError("the server sent more bytes than it announced")
    if expected_size is not None and position > expected_size:
        return ChecksumMismatchError(f"the server sent more than the {expected_size} bytes that Size gives")
    if position > max_bytes:
        return TooLargeError(f"the download passed the limit of {max_bytes} bytes")
    return None


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    return int(value) if value is not None and value.isdigit() else None


def _describe(exc: httpx.TransportError) -> str:
    # httpx messages do not carry the URL, but redact anyway: this text reaches the log.
    return redact(str(exc) or type(exc).__name__)
