"""Byte-level codecs shared by the producer and the applier: XOR, byte planes, bounded decoders.

No numpy on the device: XOR goes through Python integers and byte planes through extended slices,
both of which run in C over the whole buffer.
"""

from __future__ import annotations

import io
import struct

import bsdiff4  # type: ignore[import-untyped]
import zstandard

from edge_shared.delta.errors import DeltaFormatError, DeltaIntegrityError

BSDIFF_MAGIC = b"BSDIFF40"


def xor_bytes(left: bytes | bytearray | memoryview, right: bytes | bytearray | memoryview) -> bytes:
    """Bytewise XOR of two equally long buffers."""
    if len(left) != len(right):
        raise ValueError("xor of buffers of different lengths")
    size = len(left)
    value = int.from_bytes(left, "little") ^ int.from_bytes(right, "little")
    return value.to_bytes(size, "little")


def split_planes(data: bytes | bytearray | memoryview, item_size: int) -> bytes:
    """Group byte k of every element together (plane 0, plane 1, ...): similar bytes compress together."""
    if item_size == 1:
        return bytes(data)
    view = bytes(data)
    return b"".join(view[k::item_size] for k in range(item_size))


def join_planes(planes: bytes, item_size: int) -> bytes:
    """Inverse of `split_planes`."""
    if item_size == 1:
        return planes
    if len(planes) % item_size:
        raise DeltaFormatError("byte planes are not a whole number of elements")
    count = len(planes) // item_size
    out = bytearray(len(planes))
    for k in range(item_size):
        out[k::item_size] = planes[k * count : (k + 1) * count]
    return bytes(out)


def ref_window_log(reference_size: int, target_size: int) -> int:
    """zstd window (log2) that lets every target byte reach back over the whole reference."""
    return max(20, (reference_size + target_size).bit_length())


def zstd_decompress(
    frame: bytes, expected_size: int, *, reference: bytes | None = None, max_window_log: int = 27
) -> bytes:
    """Decode exactly `expected_size` bytes; a frame that claims more or less is refused."""
    dictionary = (
        zstandard.ZstdCompressionDict(reference, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        if reference
        else None
    )
    decompressor = zstandard.ZstdDecompressor(dict_data=dictionary, max_window_size=1 << max_window_log)
    try:
        with decompressor.stream_reader(io.BytesIO(frame), read_across_frames=False) as reader:
            out = reader.read(expected_size + 1)
    except zstandard.ZstdError as exc:
        raise DeltaIntegrityError(f"corrupt zstd frame: {exc}") from exc
    if len(out) != expected_size:
        raise DeltaIntegrityError(f"zstd frame decodes to {len(out)} bytes, expected {expected_size}")
    return out


def _bsdiff_new_size(patch: bytes) -> int:
    """The target size a BSDIFF40 patch declares (bytes 24..32, sign-magnitude little-endian)."""
    if len(patch) < 32 or patch[:8] != BSDIFF_MAGIC:
        raise DeltaIntegrityError("not a bsdiff4 patch")
    (raw,) = struct.unpack("<Q", patch[24:32])
    if raw >> 63:
        raise DeltaIntegrityError("bsdiff4 patch declares a negative size")
    return int(raw)


def bsdiff_apply(base: bytes, patch: bytes, expected_size: int) -> bytes:
    """Apply a bsdiff4 patch after checking the size it declares (it allocates that much)."""
    if _bsdiff_new_size(patch) != expected_size:
        raise DeltaIntegrityError("bsdiff4 patch declares another target size")
    try:
        out: bytes = bsdiff4.patch(base, patch)
    except (ValueError, RuntimeError, OSError) as exc:
        raise DeltaIntegrityError(f"corrupt bsdiff4 patch: {exc}") from exc
    if len(out) != expected_size:
        raise DeltaIntegrityError("bsdiff4 patch produced the wrong size")
    return out


def generic_apply(
    codec: str, base: bytes, patch: bytes, expected_size: int, *, max_window_log: int = 27
) -> bytes:
    """Decode a generic patch (`bsdiff4` or `zstd-ref`: zstd with the base as raw dictionary)."""
    if codec == "bsdiff4":
        return bsdiff_apply(base, patch, expected_size)
    if codec == "zstd-ref":
        return zstd_decompress(patch, expected_size, reference=base, max_window_log=max_window_log)
    raise DeltaFormatError(f"unknown generic codec {codec[:20]!r}")
