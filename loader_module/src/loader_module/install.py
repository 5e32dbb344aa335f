"""Moves a checked staging folder into `models/<version>`, switches `current`, applies retention.

Blocking filesystem work: call through `asyncio.to_thread`. Each step is a rename, so a crash at any
point leaves either the old or the new state visible, never half of one (design §6).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from edge_shared.fsutil import fsync_dir
from edge_shared.repository import ModelManifest, ModelRepository
from loader_module.errors import InstallFailedError
from loader_module.unpack import UnpackedModel

logger = logging.getLogger(__name__)


def install_version(
    repo: ModelRepository,
    unpacked: UnpackedModel,
    *,
    version: str,
    file_name: str,
    source_sha256: str,
    source_md5: str,
    installed_at: datetime,
    source: str = "full",
) -> ModelManifest:
    """Write the manifest into staging, then rename staging to `models/<version>` (atomic)."""
    target = repo.version_dir(version)
    if repo.is_installed(version):
        existing = repo.read_manifest(version)
        shutil.rmtree(unpacked.directory, ignore_errors=True)
        if existing.source_sha256 == source_sha256:
            return existing
        raise InstallFailedError(
            f"version {version!r} is already installed with different content; publish a new version"
        )
    if target.exists():
        _move_aside(repo, target)  # a folder without a manifest was never a complete install
    manifest = ModelManifest(
        version=version,
        file_name=file_name,
        runtime=unpacked.runtime,
        model_file=unpacked.model_file,
        labels_file=unpacked.labels_file,
        files=unpacked.files,
        source_sha256=source_sha256,
        source_md5=source_md5,
        installed_at=installed_at,
        source=source,
    )
    repo.write_manifest(unpacked.directory, manifest)
    fsync_dir(unpacked.directory)
    repo.models_dir.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(unpacked.directory, target)
    except OSError as exc:
        raise InstallFailedError(f"could not move version {version!r} into place: {exc.strerror}") from exc
    fsync_dir(repo.models_dir)
    return manifest


def activate(repo: ModelRepository, version: str) -> None:
    """Point `current` at `version` (atomic replace of the file)."""
    repo.set_current(version)


def apply_retention(repo: ModelRepository, keep: int, protect: frozenset[str] = frozenset()) -> list[str]:
    """Delete all but the newest `keep` versions, never the active one nor those in `protect` (the base
    of a pending desired delta); returns the removed versions."""
    current = repo.current_version()
    versions = repo.installed_versions()
    kept = set(versions[:keep]) | protect
    if current is not None:
        kept.add(current)
    removed = [version for version in versions if version not in kept]
    for version in removed:
        _move_aside(repo, repo.version_dir(version))
    return removed


def clean_staging(repo: ModelRepository) -> None:
    """Drop what an interrupted extraction or deletion left behind (only called when nothing runs)."""
    if not repo.staging_dir.is_dir():
        return
    for entry in repo.staging_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _move_aside(repo: ModelRepository, directory: Path) -> None:
    """Rename out of `models/` first (atomic), then delete: no half-deleted version is ever visible."""
    repo.staging_dir.mkdir(parents=True, exist_ok=True)
    trash = Path(tempfile.mkdtemp(prefix=f"trash-{directory.name}-", dir=repo.staging_dir))
    os.rename(directory, trash / directory.name)
    fsync_dir(directory.parent)
    shutil.rmtree(trash, ignore_errors=True)
