"""Take a model ZIP apart into its files and a "skeleton" from which the exact ZIP can be rebuilt.

The skeleton is the ZIP with the compressed data of each rebuildable member cut out (headers, central
directory and everything else stay). A member is rebuildable when zlib, with settings found here, deflates
its file back to the very same bytes (one stream, as `zipfile` and Info-ZIP write, or the independent
chunks `edge-model publish` writes); the applier does the same deflate. Members that cannot be
reproduced (another compressor, another zlib) stay whole inside the skeleton.

File names follow the loader's unpack rule (architecture §6): directories and `__MACOSX/` are skipped and one
common top folder is stripped, so names match the installed version's manifest.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from edge_shared.delta.container import Member
from edge_shared.delta.deflate import DeflateSettings, deflate_pieces
from edge_tools.publish.zipwriter import PACKED_DEFAULT, PACKED_RLE

_LOCAL_HEADER = struct.Struct("<4s5H3I2H")
_LOCAL_MAGIC = b"PK\x03\x04"
_IGNORED_PREFIXES = ("__MACOSX/",)
# Tried in order: what `edge-model publish` writes, then one stream at level 6 (Python's zipfile and
# Info-ZIP), then the other levels. A wrong candidate fails within its first chunk or block.
_CANDIDATES = (
    PACKED_RLE,
    PACKED_DEFAULT,
    *(DeflateSettings(level, mem_level) for mem_level in (8, 9) for level in (6, 9, 1, 5, 4, 3, 2, 7, 8)),
)


class ZipScanError(ValueError):
    """The ZIP cannot be taken apart (not a ZIP, duplicate names, inconsistent headers)."""


@dataclass
class ScannedZip:
    """Files by unpacked name, and the rebuild recipe (skeleton + members) of the ZIP itself."""

    files: dict[str, bytes]
    skeleton: bytes
    members: list[Member] = field(default_factory=list)
    verbatim: list[str] = field(default_factory=list)


def unpacked_names(names: list[str]) -> dict[str, str]:
    """ZIP member name → installed file name, for the members the loader keeps."""
    kept = [n for n in names if not n.endswith("/") and not n.startswith(_IGNORED_PREFIXES)]
    paths = {n: PurePosixPath(n.replace("\\", "/")) for n in kept}
    tops = {p.parts[0] for p in paths.values()}
    strip = len(tops) == 1 and all(len(p.parts) > 1 for p in paths.values())
    mapping = {n: PurePosixPath(*p.parts[1:]).as_posix() if strip else p.as_posix() for n, p in paths.items()}
    if len({v.lower() for v in mapping.values()}) != len(mapping):
        raise ZipScanError("two members unpack to the same name")
    return mapping


def read_files(data: bytes) -> dict[str, bytes]:
    """The installed files of a package ZIP (what the loader's version folder holds)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            mapping = unpacked_names([info.filename for info in archive.infolist()])
            return {
                mapping[info.filename]: archive.read(info)
                for info in archive.infolist()
                if info.filename in mapping
            }
    except zipfile.BadZipFile as exc:
        raise ZipScanError(f"not a ZIP archive: {exc}") from exc


def scan_zip(data: bytes) -> ScannedZip:
    """Files plus skeleton and member recipes of a ZIP."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            mapping = unpacked_names([info.filename for info in infos])
            files = {mapping[i.filename]: archive.read(i) for i in infos if i.filename in mapping}
    except zipfile.BadZipFile as exc:
        raise ZipScanError(f"not a ZIP archive: {exc}") from exc
    cuts: list[tuple[int, int, str, DeflateSettings | None]] = []  # data start, length, file, deflate
    verbatim: list[str] = []
    for info in infos:
        name = mapping.get(info.filename)
        if name is None:
            continue
        start = _data_start(data, info)
        compressed = data[start : start + info.compress_size]
        if info.compress_type == zipfile.ZIP_STORED and files[name] == compressed:
            cuts.append((start, info.compress_size, name, None))
            continue
        settings = _reproduce(files[name], compressed) if info.compress_type == zipfile.ZIP_DEFLATED else None
        if settings is None:
            verbatim.append(name)
            continue
        cuts.append((start, info.compress_size, name, settings))
    cuts.sort()
    skeleton = bytearray()
    members: list[Member] = []
    position = 0
    for start, length, name, settings in cuts:
        if start < position:
            raise ZipScanError("member data regions overlap")
        skeleton += data[position:start]
        recipe = {"level": 0} if settings is None else _recipe(settings)
        members.append(
            Member(
                file=name,
                skeleton_offset=len(skeleton),
                compressed_size=length,
                method=0 if settings is None else 8,
                **recipe,
            )
        )
        position = start + length
    skeleton += data[position:]
    return ScannedZip(
        files={m.file: files[m.file] for m in members},
        skeleton=bytes(skeleton),
        members=members,
        verbatim=verbatim,
    )


def _data_start(data: bytes, info: zipfile.ZipInfo) -> int:
    offset = info.header_offset
    header = data[offset : offset + _LOCAL_HEADER.size]
    if len(header) != _LOCAL_HEADER.size:
        raise ZipScanError("local header past the end of the ZIP")
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != _LOCAL_MAGIC:
        raise ZipScanError(f"bad local header for {info.filename!r}")
    name_length, extra_length = int(fields[9]), int(fields[10])
    return offset + _LOCAL_HEADER.size + name_length + extra_length


def _reproduce(content: bytes, compressed: bytes) -> DeflateSettings | None:
    """The zlib settings that deflate `content` to exactly `compressed`, or None.

    Chunking is only recorded for content of more than one chunk (one chunk is one plain stream).
    """
    candidates = (c for c in _CANDIDATES if c.chunk_size is None or len(content) > c.chunk_size)
    return next((c for c in candidates if _deflates_to(content, compressed, c)), None)


def _recipe(settings: DeflateSettings) -> dict[str, Any]:
    return {
        "level": settings.level,
        "mem_level": settings.mem_level,
        "strategy": settings.strategy,
        "chunk_size": settings.chunk_size,
    }


def _deflates_to(content: bytes, compressed: bytes, settings: DeflateSettings) -> bool:
    """Deflate piece by piece and stop at the first byte that differs (most candidates fail early)."""
    produced = 0
    pieces = deflate_pieces(content, settings)
    try:
        for piece in pieces:
            if compressed[produced : produced + len(piece)] != piece:
                return False
            produced += len(piece)
    finally:
        pieces.close()
    return produced == len(compressed)
