"""Safe extraction of a model ZIP into a fresh staging folder, then a check of what it holds.

Everything here blocks: call it through `asyncio.to_thread`. Names and sizes in a ZIP are attacker
controlled, so every member is checked before a byte is written, and bytes are counted again while
writing (declared sizes can lie).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edge_shared.errors import LabelError
from edge_shared.fsutil import fsync_dir
from edge_shared.labels import find_label_file, read_label_file
from edge_shared.reported import Runtime
from edge_shared.repository import MODEL_SUFFIXES, SHARED_FILE_MODE, share_dir
from loader_module.errors import DiskFullError, InvalidModelError, UnsafeArchiveError

MODEL_JSON = "model.json"
_COPY_BLOCK = 1024 * 1024
# First byte of an ONNX ModelProto: the tag of one of its top-level fields (ir_version comes first).
_ONNX_FIRST_BYTES = frozenset({0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72})
_IGNORED_PREFIXES = ("__MACOSX/",)
_ENCRYPTED = 0x1  # general-purpose flag bit 0


@dataclass(frozen=True)
class UnpackLimits:
    max_members: int
    max_unpacked_bytes: int
    min_free_bytes: int


@dataclass(frozen=True)
class UnpackedModel:
    """A checked model in its staging folder; file names are relative to `directory`."""

    directory: Path
    model_file: str
    labels_file: str | None
    """None when the package has no label file: the model must carry its class names itself."""
    runtime: Runtime
    files: dict[str, str]


def unpack_model(archive: Path, staging_root: Path, limits: UnpackLimits) -> UnpackedModel:
    """Extract `archive` into a new folder under `staging_root` and check it is one model + labels."""
    staging_root.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="unpack-", dir=staging_root))
    try:
        # mkdtemp makes it 0700; renamed into models/ it must be readable by the inference module's user.
        share_dir(directory)
        files = _extract(archive, directory, limits)
        model_file, labels_file, runtime = _identify(directory, files)
        fsync_dir(directory)
        return UnpackedModel(directory, model_file, labels_file, runtime, files)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _extract(archive: Path, directory: Path, limits: UnpackLimits) -> dict[str, str]:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise UnsafeArchiveError(f"{len(infos)} members, more than the {limits.max_members} allowed")
            plan = _plan(infos, limits)
            free = shutil.disk_usage(directory).free
            declared = sum(info.file_size for info, _ in plan)
            if free < declared + limits.min_free_bytes:
                raise DiskFullError(f"unpacking needs {declared} bytes but only {free} are free")
            files: dict[str, str] = {}
            written = 0
            for info, name in plan:
                digest, size = _write_member(zf, info, directory / name, limits.max_unpacked_bytes - written)
                written += size
                files[name] = digest
            return files
    except zipfile.BadZipFile as exc:
        raise InvalidModelError(f"not a readable ZIP: {exc}") from exc
    except UnicodeDecodeError as exc:
        # zipfile decodes a name flagged UTF-8 (general-purpose bit 11) without checking it.
        raise InvalidModelError("not a readable ZIP: a member name flagged UTF-8 is not UTF-8") from exc
    except NotImplementedError as exc:
        raise InvalidModelError(f"ZIP uses an unsupported feature: {exc}") from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"the model volume is full: {exc.strerror}") from exc
        raise


def _plan(infos: list[zipfile.ZipInfo], limits: UnpackLimits) -> list[tuple[zipfile.ZipInfo, str]]:
    """Check every member and decide its name inside the staging folder (one top folder is stripped)."""
    entries: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    total = 0
    for info in infos:
        path = _safe_name(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"member {info.filename!r} is a symbolic link")
        if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"member {info.filename!r} is not a regular file")
        if info.is_dir() or info.filename.startswith(_IGNORED_PREFIXES):
            continue
        if info.flag_bits & _ENCRYPTED:
            # zipfile would raise RuntimeError (no password) halfway through the extraction.
            raise InvalidModelError(f"member {info.filename!r} is encrypted; model ZIPs must not be")
        total += info.file_size
        if total > limits.max_unpacked_bytes:
            raise UnsafeArchiveError(f"unpacks to more than {limits.max_unpacked_bytes} bytes")
        entries.append((info, path))
    if not entries:
        raise InvalidModelError("the ZIP holds no files")
    tops = {path.parts[0] for _, path in entries}
    strip = len(tops) == 1 and all(len(path.parts) > 1 for _, path in entries)
    plan: list[tuple[zipfile.ZipInfo, str]] = []
    seen: set[str] = set()
    for info, path in entries:
        name = PurePosixPath(*path.parts[1:]).as_posix() if strip else path.as_posix()
        if name.lower() in seen:
            raise UnsafeArchiveError(f"member {name!r} appears twice")
        seen.add(name.lower())
        plan.append((info, name))
    _refuse_file_and_folder(seen)
    return plan


def _refuse_file_and_folder(names: set[str]) -> None:
    """`a` and `a/b` cannot both be written: whichever comes second would fail halfway through the
    extraction with an OS error, so the archive is refused before a byte is written."""
    folders = {parent.as_posix() for name in names for parent in PurePosixPath(name).parents}
    clash = sorted(names & folders)
    if clash:
        raise UnsafeArchiveError(f"member {clash[0]!r} is both a file and a folder")


def _safe_name(raw: str) -> PurePosixPath:
    name = raw.replace("\\", "/")
    if "\x00" in name or not name.strip("/"):
        raise UnsafeArchiveError("a member has an empty or invalid name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"member {raw!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"member {raw!r} climbs out with '..'")
    return PurePosixPath(*parts)


def _write_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> tuple[str, int]:
    _make_shared_dirs(target.parent)
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SHARED_FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), SHARED_FILE_MODE)  # the umask may have narrowed the mode given to open
        for block in _member_blocks(zf, info):
            size += len(block)
            if size > budget:
                raise UnsafeArchiveError("unpacks to more bytes than declared or allowed")
            out.write(block)
            digest.update(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def _make_shared_dirs(directory: Path) -> None:
    """Create the member's folders (the staging folder exists), each `SHARED_DIR_MODE` whatever the umask."""
    if directory.is_dir():
        return
    _make_shared_dirs(directory.parent)
    directory.mkdir()
    share_dir(directory)


def _member_blocks(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A member's bytes; damage inside the archive is the package's fault (`invalid_model`, never retried).

    The archive's digests matched what was published, so a broken deflate stream or a member offset
    outside the file means the publisher zipped broken bytes: retrying the same bytes cannot help.
    """
    try:
        with zf.open(info) as source:
            while block := source.read(_COPY_BLOCK):
                yield block
    except (zlib.error, EOFError) as exc:
        raise InvalidModelError(f"member {info.filename!r} has corrupt compressed data") from exc
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        raise InvalidModelError(f"member {info.filename!r} points outside the archive") from exc


def _identify(directory: Path, files: dict[str, str]) -> tuple[str, str | None, Runtime]:
    top = [name for name in files if "/" not in name]
    models = [name for name in top if PurePosixPath(name).suffix.lower() in MODEL_SUFFIXES]
    if len(models) != 1:
        found = "no model file" if not models else f"{len(models)} model files"
        raise InvalidModelError(f"the ZIP must hold exactly one .onnx or .tflite file, found {found}")
    model = models[0]
    runtime = MODEL_SUFFIXES[PurePosixPath(model).suffix.lower()]
    _check_magic(directory / model, runtime)
    labels = _labels_file(directory, top)
    if labels is not None:
        _check_labels(directory / labels)
    return model, labels, runtime


def _labels_file(directory: Path, top: list[str]) -> str | None:
    """`model.json`'s `labels` when it names one, else the one file whose suffix makes it a label file."""
    if MODEL_JSON in top:
        try:
            spec = json.loads((directory / MODEL_JSON).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidModelError("model.json is not valid JSON") from exc
        named = spec.get("labels") if isinstance(spec, dict) else None
        if isinstance(named, str):
            if named not in top:
                raise InvalidModelError("model.json names a label file that is not in the ZIP")
            return named
    try:
        return find_label_file(top)
    except LabelError as exc:
        raise InvalidModelError(str(exc)) from exc


def _check_magic(path: Path, runtime: Runtime) -> None:
    with path.open("rb") as handle:
        head = handle.read(8)
    if runtime == "tflite":
        valid = len(head) == 8 and head[4:8] == b"TFL3"
    else:
        valid = len(head) >= 2 and head[0] in _ONNX_FIRST_BYTES
    if not valid:
        raise InvalidModelError(f"{path.name} is not a {runtime} model (wrong magic bytes)")


def _check_labels(path: Path) -> None:
    """Parsed as the inference module will parse it, so a file it would refuse is never installed."""
    try:
        read_label_file(path)
    except LabelError as exc:
        raise InvalidModelError(str(exc)) from exc


def remove_tree(path: Path) -> None:
    """Remove a staging folder; a missing one is fine."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
