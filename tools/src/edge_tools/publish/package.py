"""Turn a model folder or ZIP into the package the loader accepts, with its digests.

Checking the package here, before upload, saves a round trip through a device to learn that a folder
held two models: the rules are the loader's (design §6).
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MODEL_SUFFIXES = (".onnx", ".tflite")
LABEL_NAMES = ("labelmap.txt", "labels.txt", "coco_classes.txt")
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


def zip_folder(folder: Path, *, store_model: bool = False) -> bytes:
    """Deterministic ZIP of a folder's files at the archive root (same input, same bytes).

    `store_model` keeps the model file uncompressed: weights deflate by only a few percent, and a device
    rebuilding the ZIP from a delta then skips a deflate pass over the whole model (docs/delta.md).
    """
    buffer = io.BytesIO()
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise PackageError(f"folder {folder} holds no files")
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            if path.is_symlink():
                raise PackageError(f"{path.name}: symlinks are not allowed in a model package")
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=_FIXED_TIME)
            is_model = path.name.lower().endswith(MODEL_SUFFIXES)
            info.compress_type = zipfile.ZIP_STORED if store_model and is_model else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def check_package(data: bytes) -> None:
    """Exactly one model file and one label file, at the root or in one top folder."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except zipfile.BadZipFile as exc:
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
    has_model_json = "model.json" in leaves
    labels = [n for n in leaves if n in LABEL_NAMES]
    if len(labels) != 1 and not has_model_json:
        raise PackageError(
            f"a package needs exactly one label file ({', '.join(LABEL_NAMES)}), found {len(labels)}"
        )


def load_package(
    source: Path, *, version: str, file_name: str | None = None, store_model: bool = False
) -> ModelPackage:
    """A folder is zipped as `<folder>-<version>.zip`; a ZIP keeps its name unless one is given."""
    if source.is_dir():
        data = zip_folder(source, store_model=store_model)
        name = file_name or f"{source.name}-{version}.zip"
    elif source.is_file():
        if store_model:
            raise PackageError("--store-model applies to a folder; a ZIP is published as it is")
        data = source.read_bytes()
        name = file_name or source.name
    else:
        raise PackageError(f"{source} is neither a folder nor a file")
    check_package(data)
    return ModelPackage(file_name=name, data=data)
