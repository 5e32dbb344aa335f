"""Raw deflate of a ZIP member, as one stream or as independent chunks that deflate in parallel.

A device rebuilding a signed ZIP from a delta must deflate the model again, byte for byte. One zlib
level-6 stream over a 35 MB float model takes ~1.1 s on one core, and no faster setting gives the same
bytes. So the publisher writes members over one chunk as independent chunks (each deflated by a fresh
compressor, ended by a sync flush so the next starts on a byte boundary; the last one finished): the
result is one ordinary deflate stream any unzip reads, and the device deflates the chunks on several
threads (zlib releases the GIL). On weights, `Z_RLE` is ~3× faster than the default strategy and no
larger; the publisher picks it when it costs nothing (`edge_tools.publish.zipwriter`).

The same function serves the publisher (writing), the producer (finding a member's settings) and the
applier (rebuilding), so all three agree by construction.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

Strategy = Literal[0, 1, 2, 3, 4]
"""zlib's Z_DEFAULT_STRATEGY, Z_FILTERED, Z_HUFFMAN_ONLY, Z_RLE, Z_FIXED."""

_BLOCK = 1024 * 1024
MIN_CHUNK = 4096
"""Smallest chunk a delta may ask for (a bound on the work per chunk, not a zlib limit)."""


@dataclass(frozen=True)
class DeflateSettings:
    """What reproduces a member's compressed bytes; `chunk_size` None means one stream."""

    level: int = 6
    mem_level: int = 8
    strategy: int = zlib.Z_DEFAULT_STRATEGY
    chunk_size: int | None = None


def deflate_pieces(
    data: bytes | bytearray | memoryview, settings: DeflateSettings, workers: int = 1
) -> Generator[bytes, None, None]:
    """The raw deflate stream of `data`, in pieces, in order (at most `2 × workers` chunks in flight).

    Closing the iterator early (a caller comparing as it goes) stops after the chunks in flight.
    """
    view = memoryview(data).cast("B")
    if settings.chunk_size is None:
        compressor = _compressor(settings)
        for start in range(0, max(len(view), 1), _BLOCK):
            yield compressor.compress(view[start : start + _BLOCK])
        yield compressor.flush()
        return
    size = settings.chunk_size
    starts = range(0, max(len(view), 1), size)
    last = starts[-1]

    def chunk(start: int) -> bytes:
        compressor = _compressor(settings)
        body = compressor.compress(view[start : start + size])
        return body + compressor.flush(zlib.Z_FINISH if start == last else zlib.Z_SYNC_FLUSH)

    if workers <= 1 or len(starts) == 1:
        yield from map(chunk, starts)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deflate") as pool:
        pending: deque[Future[bytes]] = deque()
        try:
            for start in starts:
                pending.append(pool.submit(chunk, start))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _compressor(settings: DeflateSettings) -> zlib._Compress:
    return zlib.compressobj(settings.level, zlib.DEFLATED, -15, settings.mem_level, settings.strategy)
