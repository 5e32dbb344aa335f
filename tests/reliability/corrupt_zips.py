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


def encrypted_member(data: bytes) -> bytes:
    """Every member flagged as encrypted (general-purpose bit 0, in its local header and its central
    directory entry): `zipfile` then refuses to read it without a password. The bytes stay plain, which
    is enough: the flag alone decides what the reader does."""
    broken = bytearray(data)
    for info in zipfile.ZipFile(io.BytesIO(data)).infolist():
        broken[info.header_offset + 6] |= 0x01
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) != -1:
        broken[start + 8] |= 0x01
        start += 4
    return bytes(broken)


def file_and_folder(data: bytes) -> bytes:
    """The valid archive plus a member `a` and a member `a/b`: one name is both a file and a folder."""
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("a", b"file")
        archive.writestr("a/b", b"inside the file")
    return buffer.getvalue()
