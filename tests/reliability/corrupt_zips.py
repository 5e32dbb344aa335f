"""Two ways a ZIP can be broken although its MD5/SHA-256 match what was published (the publisher zipped
broken bytes): a damaged deflate stream, and a central directory pointing before the file's start."""

from __future__ import annotations

import io
import struct
import zipfile


def corrupt_deflate_stream(data: bytes) -> bytes:
    """The first member's compressed data starts with the reserved block type (BTYPE 11)."""
    info = zipfile.ZipFile(io.BytesIO(data)).infolist()[0]
    assert info.compress_type == zipfile.ZIP_DEFLATED
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    broken = bytearray(data)
    broken[start] = 0xFF
    return bytes(broken)


def central_directory_offset_too_large(data: bytes) -> bytes:
    """The end record claims the central directory starts 1000 bytes later than it does, so the
    members' computed offsets become negative."""
    eocd = data.rindex(b"PK\x05\x06")
    (offset,) = struct.unpack("<I", data[eocd + 16 : eocd + 20])
    broken = bytearray(data)
    broken[eocd + 16 : eocd + 20] = struct.pack("<I", offset + 1000)
    return bytes(broken)
