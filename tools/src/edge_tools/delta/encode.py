"""Encoders matching the applier's decoders: zstd frames, generic patches (smallest kept), tensors."""

from __future__ import annotations

from dataclasses import dataclass

import bsdiff4  # type: ignore[import-untyped]
import zstandard

from edge_shared.delta.codecs import ref_window_log, split_planes, xor_bytes
from edge_shared.delta.container import GenericCodec

#: bsdiff4's suffix sort needs ~17× the base in memory and minutes past a few tens of MB.
BSDIFF_MAX_BYTES = 16 * 1024 * 1024
#: zstd's strongest levels are slow on big inputs; past this a faster level with wide tables is used.
STRONG_MAX_BYTES = 4 * 1024 * 1024
MAX_WINDOW_LOG = 27


def zstd_frame(data: bytes | bytearray | memoryview, *, level: int | None = None) -> bytes:
    """One zstd frame with a checksum; level 19 for small inputs, 9 for big ones unless given."""
    chosen = level if level is not None else (19 if len(data) <= STRONG_MAX_BYTES else 9)
    return zstandard.ZstdCompressor(level=chosen, write_checksum=True, write_content_size=True).compress(data)


def zstd_ref(base: bytes, target: bytes) -> bytes | None:
    """zstd with the base as raw-content dictionary (`--patch-from`); None past the window limit."""
    if not base:
        return zstd_frame(target)
    window = ref_window_log(len(base), len(target))
    if window > MAX_WINDOW_LOG:
        return None
    dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    if len(base) + len(target) <= STRONG_MAX_BYTES:
        params = zstandard.ZstdCompressionParameters.from_level(
            19, window_log=window, write_checksum=True, write_content_size=True
        )
    else:
        # Level 6 with hash and chain tables as wide as the window finds matches anywhere in a big base.
        params = zstandard.ZstdCompressionParameters.from_level(
            6, window_log=window, hash_log=min(window, 26), chain_log=min(window, 26),
            write_checksum=True, write_content_size=True,
        )  # fmt: skip
    return zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params).compress(target)


@dataclass(frozen=True)
class GenericChoice:
    codec: GenericCodec
    patch: bytes
    comparison: dict[GenericCodec, int | None]


def generic_diff(base: bytes, target: bytes) -> GenericChoice | None:
    """Try bsdiff4 and zstd-ref, keep the smaller, record both sizes (None: not tried, too large).

    None when neither codec takes inputs this large (the file then travels whole).
    """
    candidates: dict[GenericCodec, bytes | None] = {
        "zstd-ref": zstd_ref(base, target),
        "bsdiff4": (bsdiff4.diff(base, target) if max(len(base), len(target)) <= BSDIFF_MAX_BYTES else None),
    }
    comparison: dict[GenericCodec, int | None] = {
        codec: (len(patch) if patch is not None else None) for codec, patch in candidates.items()
    }
    tried = [(len(patch), codec, patch) for codec, patch in candidates.items() if patch is not None]
    if not tried:
        return None
    _, codec, patch = min(tried)
    return GenericChoice(codec, patch, comparison)


def tensor_chunks(base: bytes, target: bytes, item_size: int, chunk_size: int, *, level: int) -> list[bytes]:
    """XOR with the base, split into byte planes, one zstd frame per chunk (bounds the applier's memory)."""
    size = chunk_size - chunk_size % item_size
    frames = []
    for start in range(0, len(target), size):
        xored = xor_bytes(memoryview(target)[start : start + size], memoryview(base)[start : start + size])
        frames.append(zstd_frame(split_planes(xored, item_size), level=level))
    return frames
