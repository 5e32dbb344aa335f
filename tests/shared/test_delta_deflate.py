"""Chunked raw deflate: one ordinary stream, the same bytes on any number of threads."""

from __future__ import annotations

import threading
import zlib

import numpy as np
import pytest

from edge_shared.delta.deflate import MIN_CHUNK, DeflateSettings, deflate_pieces

CHUNK = 64 * 1024
WEIGHTS = np.random.default_rng(7).standard_normal(100_000).astype(np.float32).tobytes()  # 400 kB, 7 chunks


def deflated(data: bytes, settings: DeflateSettings, workers: int = 1) -> bytes:
    return b"".join(deflate_pieces(data, settings, workers))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
@pytest.mark.parametrize("strategy", [zlib.Z_DEFAULT_STRATEGY, zlib.Z_RLE, zlib.Z_HUFFMAN_ONLY])
def test_chunked_stream_inflates_to_the_input(size: int, strategy: int) -> None:
    data = (WEIGHTS * 2)[:size]
    stream = deflated(data, DeflateSettings(strategy=strategy, chunk_size=CHUNK), workers=2)
    inflater = zlib.decompressobj(-15)
    assert inflater.decompress(stream) == data
    assert inflater.eof and inflater.unused_data == b""


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_threads_do_not_change_the_bytes(workers: int) -> None:
    settings = DeflateSettings(strategy=zlib.Z_RLE, chunk_size=CHUNK)
    assert deflated(WEIGHTS, settings, workers) == deflated(WEIGHTS, settings, 1)


def test_chunks_are_independent_and_end_on_a_sync_flush() -> None:
    settings = DeflateSettings(chunk_size=CHUNK)
    pieces = list(deflate_pieces(WEIGHTS, settings))
    assert len(pieces) == -(-len(WEIGHTS) // CHUNK)
    assert all(piece.endswith(b"\x00\x00\xff\xff") for piece in pieces[:-1])
    # Each chunk is what a fresh compressor makes of its slice: a device can rebuild any one alone.
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
    assert pieces[2] == compressor.compress(WEIGHTS[2 * CHUNK : 3 * CHUNK]) + compressor.flush(
        zlib.Z_SYNC_FLUSH
    )


def test_input_within_one_chunk_gives_the_one_stream_zipfile_writes() -> None:
    data = WEIGHTS[: CHUNK - 5]
    one_stream = zlib.compressobj(6, zlib.DEFLATED, -15)
    expected = one_stream.compress(data) + one_stream.flush()
    assert deflated(data, DeflateSettings(chunk_size=CHUNK)) == expected
    assert deflated(data, DeflateSettings()) == expected


def test_chunking_and_strategy_each_change_the_bytes() -> None:
    """So a delta that records the wrong recipe cannot rebuild the signed ZIP by accident."""
    outputs = {
        deflated(WEIGHTS, DeflateSettings()),
        deflated(WEIGHTS, DeflateSettings(chunk_size=CHUNK)),
        deflated(WEIGHTS, DeflateSettings(chunk_size=2 * CHUNK)),
        deflated(WEIGHTS, DeflateSettings(strategy=zlib.Z_RLE, chunk_size=CHUNK)),
    }
    assert len(outputs) == 4


def test_closing_early_stops_the_threads() -> None:
    before = threading.active_count()
    pieces = deflate_pieces(WEIGHTS * 4, DeflateSettings(chunk_size=MIN_CHUNK), workers=3)
    next(pieces)
    pieces.close()
    assert threading.active_count() == before
