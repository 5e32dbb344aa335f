"""A routed `DLModelOutput` body → a `LoadRequest` with its files resolved under the model root.

Two senders exist: our loader, which sends the full `ModelAnnouncement` (paths relative to the root,
version, file name, runtime, SHA-256), and the reference architecture's loader, which sends only
`local_model_path` and `local_labelmap_path`, often as absolute paths. Whatever is missing is derived:
the runtime from the extension (checked at load anyway), the version from the model's folder name, no
checksum. An absolute path is accepted when it lies inside the model root; anything leading outside
(absolute elsewhere, `..`, a symlink out) is refused as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_shared.errors import UnsafePathError
from edge_shared.names import Version, check_version
from edge_shared.reported import Runtime
from edge_shared.repository import ModelRepository
from inference_module.errors import InvalidAnnouncementError, UnsafeModelPathError

__all__ = ["LoadRequest", "parse_announcement"]

_MAX_PATH = 1024


@dataclass(frozen=True, slots=True)
class LoadRequest:
    """A model to load: files already resolved under the model root; `labels_path` None = embedded."""

    version: str
    file_name: str
    model_path: Path
    labels_path: Path | None
    expected_sha256: str | None
    announced_runtime: Runtime | None = None
    #: Set when this version is loaded at start because the one `current` names could not be.
    fallback_from: str | None = None
    fallback_reason: str | None = None


class _Announcement(BaseModel):
    """Every key but the model path is optional, so the reference loader's two-key body is understood."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    local_model_path: str = Field(min_length=1, max_length=_MAX_PATH)
    local_labelmap_path: str | None = Field(default=None, min_length=1, max_length=_MAX_PATH)
    version: Version | None = None
    file_name: str | None = Field(default=None, min_length=1, max_length=128)
    runtime: Runtime | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


def parse_announcement(data: bytes, repository: ModelRepository) -> LoadRequest:
    """Validate a `DLModelOutput` body and resolve its paths under the model root (escapes refused)."""
    try:
        announcement = _Announcement.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidAnnouncementError(f"the message is not a model announcement: {_summary(exc)}") from exc
    model_relative = _root_relative(announcement.local_model_path, repository.root)
    labels_relative = (
        None
        if announcement.local_labelmap_path is None
        else _root_relative(announcement.local_labelmap_path, repository.root)
    )
    try:
        model_path = repository.resolve(model_relative)
        labels_path = None if labels_relative is None else repository.resolve(labels_relative)
    except UnsafePathError as exc:
        raise UnsafeModelPathError(f"the message names a path outside the model root: {exc}") from exc
    version = announcement.version or _version_from_folder(model_relative)
    return LoadRequest(
        version=version,
        file_name=announcement.file_name or PurePosixPath(model_relative).name,
        model_path=model_path,
        labels_path=labels_path,
        expected_sha256=announcement.sha256,
        announced_runtime=announcement.runtime,
    )


def _root_relative(value: str, root: Path) -> str:
    """A relative path as it is; an absolute one made relative to the root, refused when outside it."""
    normalized = value.replace("\\", "/")
    pure = PurePosixPath(normalized)
    if not pure.is_absolute():
        return normalized
    for base in dict.fromkeys((PurePosixPath(root.as_posix()), PurePosixPath(root.resolve().as_posix()))):
        if pure.is_relative_to(base) and pure != base:
            return pure.relative_to(base).as_posix()
    raise UnsafeModelPathError("the message names an absolute path that is not inside the model root")


def _version_from_folder(model_relative: str) -> str:
    """`models/<version>/model.tflite` → `<version>`: the reference loader names folders by version."""
    parent = PurePosixPath(model_relative).parent
    try:
        return check_version(parent.name)
    except ValueError as exc:
        raise InvalidAnnouncementError(
            "the message names no version and the model's folder name is not one "
            "(expected <root>/models/<version>/<model file>)"
        ) from exc


def _summary(exc: ValidationError) -> str:
    """Field names and reasons only: never echo the (untrusted) input values."""
    return json.dumps([{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()])
