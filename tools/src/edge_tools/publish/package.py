"""Turn a model folder or ZIP into the package the loader accepts, with its digests.

Checking the package here, before upload, saves a round trip through a device to learn that a folder
held two models: the rules are the loader's (architecture §6).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edge_shared.desired import DeltaFields, DesiredFields, desired_patch
from edge_shared.errors import LabelError
from edge_shared.labels import find_label_file
from edge_tools.publish.zipwriter import ZipEntry, write_zip

MODEL_SUFFIXES = (".onnx", ".tflite")
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


class PackageError(ValueError):
    """The folder or ZIP is not a model package the loader would accept."""


@dataclass(frozen=True)
class ModelPackage:
    file_name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def md5_b64(self) -> str:
        return base64.b64encode(hashlib.md5(self.data).digest()).decode()

    @property
    def md5_bytes(self) -> bytes:
        return hashlib.md5(self.data).digest()

    @property
    def sha256_hex(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def sha256_bytes(self) -> bytes:
        return hashlib.sha256(self.data).digest()

    def desired(
        self,
        url: str,
        version: str,
        *,
        signature: str | None = None,
        delta: DeltaFields | None = None,
        clear_unset: bool = False,
        allow_insecure_http: bool = False,
    ) -> dict[str, Any]:
        """The loader's desired properties naming this package at `url` (`edge_shared.desired_patch`)."""
        fields: DesiredFields = {
            "content_md5": self.md5_b64,
            "content_sha256": self.sha256_hex,
            "version": version,
            "size": self.size,
        }
        if signature is not None:
            fields["signature"] = signature
        if delta is not None:
            fields["delta"] = delta
        return desired_patch(
            self.file_name, url, clear_unset=clear_unset, allow_insecure_http=allow_insecure_http, **fields
        )


def zip_folder(folder: Path, *, store_model: bool = False) -> bytes:
    """Deterministic ZIP of a folder's files at the archive root (same input, same bytes).

    Big members are deflated in independent chunks a device rebuilds in parallel when it applies a
    delta (`edge_tools.publish.zipwriter`). `store_model` keeps the model file uncompressed instead:
    weights deflate by only a few percent, and the device then skips the deflate pass altogether.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise PackageError(f"folder {folder} holds no files")
    entries = []
    for path in files:
        if path.is_symlink():
            raise PackageError(f"{path.name}: symlinks are not allowed in a model package")
        entries.append(ZipEntry(path.relative_to(folder).as_posix(), path.read_bytes(), _FIXED_TIME))
    return _write(entries, store_model=store_model)


def repack_zip(data: bytes, *, store_model: bool = False) -> bytes:
    """The same files (names, order, timestamps, modes) written as `zip_folder` writes them.

    For a ZIP made by another tool: its single-stream model member would cost a device a full level-6
    deflate pass (~1 s per 35 MB) each time it rebuilds the ZIP from a delta. Directory entries are
    dropped (the loader skips them anyway).
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = [
                ZipEntry(
                    info.filename,
                    archive.read(info),
                    info.date_time,
                    (info.external_attr >> 16) & 0o777 or 0o644,
                )
                for info in archive.infolist()
                if not info.is_dir()
            ]
    except (zipfile.BadZipFile, UnicodeDecodeError, zlib.error, NotImplementedError) as exc:
        raise PackageError(f"cannot repack: {exc}") from exc
    return _write(entries, store_model=store_model)


def _write(entries: list[ZipEntry], *, store_model: bool) -> bytes:
    if store_model:
        entries = [
            dataclasses.replace(entry, deflate=False)
            if entry.name.lower().endswith(MODEL_SUFFIXES)
            else entry
            for entry in entries
        ]
    try:
        return write_zip(entries)
    except ValueError as exc:
        raise PackageError(str(exc)) from exc


def check_package(data: bytes) -> None:
    """Exactly one model file and at most one label file, at the root or in one top folder."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise PackageError("not a ZIP archive") from exc
    tops = {PurePosixPath(n).parts[0] for n in names if len(PurePosixPath(n).parts) > 1}
    if (
        any(len(PurePosixPath(n).parts) > 2 for n in names)
        or (tops and any(len(PurePosixPath(n).parts) == 1 for n in names))
        or len(tops) > 1
    ):
        raise PackageError("files must sit at the ZIP root or in one top folder")
    leaves = [PurePosixPath(n).name for n in names]
    models = [n for n in leaves if n.lower().endswith(MODEL_SUFFIXES)]
    if len(models) != 1:
        raise PackageError(f"a package needs exactly one .onnx or .tflite file, found {len(models)}")
    if "model.json" not in leaves:  # model.json may name the label file itself
        try:
            find_label_file(leaves)  # none is fine: the model may carry its class names
        except LabelError as exc:
            raise PackageError(str(exc)) from exc


def load_package(
    source: Path,
    *,
    version: str,
    file_name: str | None = None,
    store_model: bool = False,
    repack: bool = False,
) -> ModelPackage:
    """A folder is zipped as `<folder>-<version>.zip`; a ZIP keeps its name unless one is given.

    A ZIP is published byte for byte as it is, unless `repack` (then `store_model` applies to it too).
    """
    if source.is_dir():
        data = zip_folder(source, store_model=store_model)
        name = file_name or f"{source.name}-{version}.zip"
    elif source.is_file():
        if store_model and not repack:
            raise PackageError("--store-model applies to a folder, or to a ZIP with --repack")
        data = source.read_bytes()
        if repack:
            data = repack_zip(data, store_model=store_model)
        name = file_name or source.name
    else:
        raise PackageError(f"{source} is neither a folder nor a file")
    check_package(data)
    return ModelPackage(file_name=name, data=data)
