"""The model repository on the volume shared by loader and inference (architecture §6).

```
<root>/models/<version>/           immutable once installed: model file, labels, manifest.json
<root>/current                     names the active version; replaced atomically, never edited in place
<root>/.downloads/  <root>/.staging/
```
The loader writes; the inference module only reads, usually as another user (the images run the loader
as uid 10002 and inference as 10001). So everything the inference module opens is published readable by
all, whatever the writer's umask: `models/`, `models/<version>/` and its folders 0755, their files,
`manifest.json` and `current` 0644. `.downloads/`, `.staging/` and the loader's state stay private.
Every path that comes from outside (a routed message, a manifest) goes through `resolve`, which refuses
anything that would leave the root.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_shared.errors import RepositoryError, UnsafePathError
from edge_shared.fsutil import atomic_write_bytes
from edge_shared.names import Version, check_version
from edge_shared.reported import Runtime

MODELS_DIR = "models"
CURRENT_FILE = "current"
DOWNLOADS_DIR = ".downloads"
STAGING_DIR = ".staging"
MANIFEST_FILE = "manifest.json"
MODEL_SUFFIXES: dict[str, Runtime] = {".onnx": "onnx", ".tflite": "tflite"}
SHARED_DIR_MODE = 0o755
"""Mode of every folder the inference module reads: `models/` and each installed version's folders."""
SHARED_FILE_MODE = 0o644
"""Mode of every file the inference module reads: model, labels, `manifest.json`, `current`."""
PRIVATE_DIR_MODE = 0o700
"""Mode of the loader's work areas (`.downloads/`, `.staging/`): no other user has business there."""


class ModelManifest(BaseModel):
    """`models/<version>/manifest.json`: what was installed, from what, with every file's digest."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Version
    file_name: str
    runtime: Runtime
    model_file: str
    labels_file: str | None = Field(
        default=None, description="the package's label file; None when the model carries its class names"
    )
    files: dict[str, str] = Field(description="relative file name → sha256 hex, for every file")
    source_sha256: str = Field(description="sha256 of the ZIP the version was installed from")
    source_md5: str | None = Field(
        default=None, description="md5 hex of that ZIP (a desired state may name only its MD5)"
    )
    installed_at: datetime
    source: str = "full"

    @property
    def model_sha256(self) -> str:
        return self.files[self.model_file]


class ModelRepository:
    """Paths and read/replace operations on one model root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def models_dir(self) -> Path:
        return self.root / MODELS_DIR

    @property
    def current_path(self) -> Path:
        return self.root / CURRENT_FILE

    @property
    def downloads_dir(self) -> Path:
        return self.root / DOWNLOADS_DIR

    @property
    def staging_dir(self) -> Path:
        return self.root / STAGING_DIR

    def ensure_layout(self) -> None:
        for path in (self.models_dir, self.downloads_dir, self.staging_dir):
            path.mkdir(parents=True, exist_ok=True)
        _set_mode(self.models_dir, SHARED_DIR_MODE)
        for private in (self.downloads_dir, self.staging_dir):  # the loader's work areas
            _set_mode(private, PRIVATE_DIR_MODE)

    def version_dir(self, version: str) -> Path:
        return self.models_dir / check_version(version)

    def is_installed(self, version: str) -> bool:
        return (self.version_dir(version) / MANIFEST_FILE).is_file()

    def resolve(self, relative: str) -> Path:
        """Resolve a root-relative path, refusing absolute paths, `..` and symlinks leading out."""
        return resolve_under(self.root, relative)

    def relative(self, path: Path) -> str:
        """The root-relative POSIX form of a path inside the root (what messages carry)."""
        return PurePosixPath(path.resolve().relative_to(self.root.resolve())).as_posix()

    def read_manifest(self, version: str) -> ModelManifest:
        path = self.version_dir(version) / MANIFEST_FILE
        try:
            return ModelManifest.model_validate_json(path.read_bytes())
        except FileNotFoundError as exc:
            raise RepositoryError(f"version {version!r} is not installed") from exc
        except PermissionError as exc:
            raise RepositoryError(_unreadable(f"the manifest of version {version!r}")) from exc
        except ValidationError as exc:
            raise RepositoryError(f"manifest of version {version!r} is invalid") from exc

    def write_manifest(self, directory: Path, manifest: ModelManifest) -> None:
        data = (manifest.model_dump_json(indent=2) + "\n").encode("utf-8")
        atomic_write_bytes(directory / MANIFEST_FILE, data, mode=SHARED_FILE_MODE)

    def current_version(self) -> str | None:
        """The active version, or None before the first install."""
        try:
            text = self.current_path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise RepositoryError(_unreadable("`current`")) from exc
        try:
            return check_version(text)
        except ValueError as exc:
            raise RepositoryError("the `current` file does not name a valid version") from exc

    def set_current(self, version: str) -> None:
        """Atomically point `current` at an installed version."""
        if not self.is_installed(version):
            raise RepositoryError(f"version {version!r} is not installed")
        atomic_write_bytes(self.current_path, f"{version}\n".encode(), mode=SHARED_FILE_MODE)

    def installed_versions(self) -> list[str]:
        """Installed versions, newest install first; folders without a valid manifest are skipped."""
        if not self.models_dir.is_dir():
            return []
        found: list[tuple[datetime, str]] = []
        for entry in self.models_dir.iterdir():
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            try:
                manifest = self.read_manifest(entry.name)
            except (RepositoryError, ValueError):
                continue
            found.append((manifest.installed_at, manifest.version))
        found.sort(reverse=True)
        return [version for _, version in found]

    def model_paths(self, version: str) -> tuple[Path, Path | None, ModelManifest]:
        """Model file, label file (None without one) and manifest of a version, checked to stay inside."""
        manifest = self.read_manifest(version)
        base = f"{MODELS_DIR}/{version}"
        labels = manifest.labels_file
        return (
            self.resolve(f"{base}/{manifest.model_file}"),
            None if labels is None else self.resolve(f"{base}/{labels}"),
            manifest,
        )


def share_dir(path: Path) -> None:
    """Give a folder the inference module reads `SHARED_DIR_MODE`, whatever the umask made it."""
    _set_mode(path, SHARED_DIR_MODE)


def _set_mode(path: Path, mode: int) -> None:
    if stat.S_IMODE(path.stat().st_mode) != mode:
        os.chmod(path, mode)


def _unreadable(what: str) -> str:
    return (
        f"{what} cannot be read by this process (uid {os.geteuid()}): permission denied; the model "
        "volume must be readable by the inference module's user (docs/operations.md, 'The model volume')"
    )


def resolve_under(root: Path, relative: str) -> Path:
    """Join `relative` to `root` and resolve symlinks; the result must stay inside `root`."""
    if not relative or "\x00" in relative:
        raise UnsafePathError("empty path or NUL byte")
    normalized = relative.replace("\\", "/")
    pure = PurePosixPath(normalized)
    if pure.is_absolute() or (normalized[1:3] == ":/" and normalized[0].isalpha()):
        raise UnsafePathError("absolute paths are not allowed")
    if ".." in pure.parts:
        raise UnsafePathError("'..' is not allowed")
    root_real = Path(os.path.realpath(root))
    target = Path(os.path.realpath(root_real.joinpath(*pure.parts)))
    if target != root_real and root_real not in target.parents:
        raise UnsafePathError("path resolves outside the model root")
    return target
