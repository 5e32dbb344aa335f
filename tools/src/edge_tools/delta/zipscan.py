"""Take a model ZIP apart into its files and a "skeleton" from which the exact ZIP can be rebuilt.

The skeleton is the ZIP with the compressed data of each rebuildable member cut out (headers, central
directory and everything else stay). A member is rebuildable when zlib, with settings found here, deflates
its file back to the very same bytes; the applier does the same deflate. Members that cannot be
reproduced (another compressor, another zlib) stay whole inside the skeleton.

File names follow the loader's unpack rule (design §6): directories and `__MACOSX/` are skipped and one
common top folder is stripped, so names match the installed version's manifest.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from edge_shared.delta.container import Member

_LOCAL_HEADER = struct.Struct("<4s5H3I2H")
_LOCAL_MAGIC = b"PK\x03\x04"
_IGNORED_PREFIXES = ("__MACOSX/",)
# Python's zipfile and Info-ZIP use level 6; the rest are tried when it does not reproduce the bytes.
_LEVELS = (6, 9, 1, 5, 4, 3, 2, 7, 8)
_MEM_LEVELS = (8, 9)
_BLOCK = 1024 * 1024


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
    cuts: list[tuple[int, int, str, int, int, int]] = []  # data start, length, file, method, level, mem
    verbatim: list[str] = []
    for info in infos:
        name = mapping.get(info.filename)
        if name is None:
            continue
        start = _data_start(data, info)
        compressed = data[start : start + info.compress_size]
        settings = _reproduce(files[name], info.compress_type, compressed)
        if settings is None:
            verbatim.append(name)
            continue
        cuts.append((start, info.compress_size, name, info.compress_type, *settings))
    cuts.sort()
    skeleton = bytearray()
    members: list[Member] = []
    position = 0
    for start, length, name, method, level, mem_level in cuts:
        if start < position:
            raise ZipScanError("member data regions overlap")
        skeleton += data[position:start]
        members.append(
            Member(
                file=name,
                skeleton_offset=len(skeleton),
                compressed_size=length,
                method=0 if method == zipfile.ZIP_STORED else 8,
                level=level,
                mem_level=mem_level,
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


def _reproduce(content: bytes, method: int, compressed: bytes) -> tuple[int, int] | None:
    """(level, mem_level) with which zlib rebuilds `compressed` from `content`, or None."""
    if method == zipfile.ZIP_STORED:
        return (0, 8) if content == compressed else None
    if method != zipfile.ZIP_DEFLATED:
        return None
    for mem_level in _MEM_LEVELS:
        for level in _LEVELS:
            if _deflates_to(content, compressed, level, mem_level):
                return level, mem_level
    return None


def _deflates_to(content: bytes, compressed: bytes, level: int, mem_level: int) -> bool:
    """Deflate block by block and stop at the first byte that differs (most candidates fail early)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, zlib.Z_DEFAULT_STRATEGY)
    view = memoryview(content)
    produced = 0
    for start in range(0, max(len(content), 1), _BLOCK):
        chunk = compressor.compress(view[start : start + _BLOCK])
        if compressed[produced : produced + len(chunk)] != chunk:
            return False
        produced += len(chunk)
    tail = compressor.flush()
    return compressed[produced:] == tail
