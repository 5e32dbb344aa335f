"""A small deterministic ZIP writer whose big members a device can deflate again quickly and exactly.

`zipfile` deflates every member as one level-6 stream with the default strategy, and cannot be told
otherwise. A device rebuilding this ZIP from a delta must redo that deflate byte for byte: ~1.1 s on one
core for a 35 MB float model. Here, members bigger than one chunk are written as independent 1 MiB
deflate chunks (`edge_shared.delta.deflate`), which the device deflates on two threads, and with zlib's
`Z_RLE` strategy when that costs at most 1 % more than the default one (on float weights it costs
nothing: matches are rare, and the gain is the entropy coding both do; RLE is ~3× faster). The stream is
ordinary deflate: every unzip reads it. Smaller files are deflated as `zipfile` would.

Plain ZIP only (no ZIP64): a member or archive past 4 GiB, or 65,535 members, is refused.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from edge_shared.delta.deflate import DeflateSettings, deflate_pieces

PACK_CHUNK = 1024 * 1024
"""Input bytes per independent deflate chunk (the producer looks for this size first)."""
RLE_ALLOWANCE = 1.01
"""`Z_RLE` is chosen when its output is at most this many times the default strategy's."""
ONE_STREAM = DeflateSettings()
PACKED_DEFAULT = DeflateSettings(chunk_size=PACK_CHUNK)
PACKED_RLE = DeflateSettings(strategy=zlib.Z_RLE, chunk_size=PACK_CHUNK)

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_LIMIT = 0xFFFFFFFF
_UTF8_NAME = 0x800
_MADE_BY_UNIX = 3 << 8 | 20
_THREADS = min(8, os.cpu_count() or 1)  # the bytes do not depend on it


@dataclass(frozen=True)
class ZipEntry:
    """One file: its name in the archive, bytes, timestamp, Unix mode, and whether to deflate it."""

    name: str
    data: bytes
    date_time: tuple[int, int, int, int, int, int] = (2020, 1, 1, 0, 0, 0)
    mode: int = 0o644
    deflate: bool = True


def pack_member(data: bytes) -> tuple[DeflateSettings, bytes]:
    """The settings this writer uses for `data`, and the raw deflate stream they give."""
    if len(data) <= PACK_CHUNK:
        return ONE_STREAM, _deflate(data, ONE_STREAM)
    rle = _deflate(data, PACKED_RLE)
    default = _deflate(data, PACKED_DEFAULT)
    return (PACKED_RLE, rle) if len(rle) <= RLE_ALLOWANCE * len(default) else (PACKED_DEFAULT, default)


def write_zip(entries: Sequence[ZipEntry]) -> bytes:
    """The archive's bytes: same entries, same bytes."""
    if len(entries) > 0xFFFF:
        raise ValueError("a plain ZIP holds at most 65,535 members")
    out = bytearray()
    central = bytearray()
    for entry in entries:
        name = entry.name.encode("utf-8")
        flags = 0 if entry.name.isascii() else _UTF8_NAME
        if entry.deflate:
            payload, method = pack_member(entry.data)[1], 8
        else:
            payload, method = entry.data, 0
        if len(entry.data) >= _LIMIT or len(payload) >= _LIMIT:
            raise ValueError(f"{entry.name}: members of 4 GiB or more need ZIP64, which this writer omits")
        crc = zlib.crc32(entry.data)
        dos_time, dos_date = _dos_time(entry.date_time)
        offset = len(out)
        out += _LOCAL.pack(
            0x04034B50, 20, flags, method, dos_time, dos_date, crc, len(payload), len(entry.data),
            len(name), 0,
        )  # fmt: skip
        out += name + payload
        central += _CENTRAL.pack(
            0x02014B50, _MADE_BY_UNIX, 20, flags, method, dos_time, dos_date, crc, len(payload),
            len(entry.data), len(name), 0, 0, 0, 0, (0o100000 | entry.mode) << 16, offset,
        )  # fmt: skip
        central += name
    start = len(out)
    out += central
    if len(out) >= _LIMIT:
        raise ValueError("archives of 4 GiB or more need ZIP64, which this writer omits")
    out += _END.pack(0x06054B50, 0, 0, len(entries), len(entries), len(central), start, 0)
    return bytes(out)


def _deflate(data: bytes, settings: DeflateSettings) -> bytes:
    return b"".join(deflate_pieces(data, settings, _THREADS))


def _dos_time(date_time: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    if not 1980 <= year <= 2107:
        raise ValueError(f"ZIP timestamps run from 1980 to 2107, not {year}")
    return hour << 11 | minute << 5 | second // 2, (year - 1980) << 9 | month << 5 | day
