"""Moves a checked staging folder into `models/<version>`, switches `current`, prunes old versions.

Blocking filesystem work: call through `asyncio.to_thread`. Each step is a rename, so a crash at any
point leaves either the old or the new state visible, never half of one (architecture §6).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from datetime import datetime
from pathlib import Path

from edge_shared.fsutil import fsync_dir
from edge_shared.reported import Source
from edge_shared.repository import SHARED_DIR_MODE, SHARED_FILE_MODE, ModelManifest, ModelRepository
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
    source: Source = "full",
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


def prune_versions(repo: ModelRepository, keep: int, protect: frozenset[str] = frozenset()) -> list[str]:
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


def share_installed(repo: ModelRepository) -> int:
    """Give installed versions and `current` the shared modes (`SHARED_DIR_MODE`, `SHARED_FILE_MODE`).

    Earlier loaders installed versions 0700 with a 0600 manifest and `current`, which an inference
    module running as another user cannot read; repairing them at start makes such a volume serve again
    without a re-download. Returns how many modes were changed.
    """
    changed = 0
    paths: list[tuple[Path, int]] = []
    if repo.current_path.is_file():
        paths.append((repo.current_path, SHARED_FILE_MODE))
    if repo.models_dir.is_dir():
        for version_dir in repo.models_dir.iterdir():
            if version_dir.name.startswith(".") or not version_dir.is_dir() or version_dir.is_symlink():
                continue
            paths.append((version_dir, SHARED_DIR_MODE))
            for folder, dirs, files in os.walk(version_dir):
                paths.extend((Path(folder, name), SHARED_DIR_MODE) for name in dirs)
                paths.extend((Path(folder, name), SHARED_FILE_MODE) for name in files)
    for path, mode in paths:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode) or stat.S_IMODE(info.st_mode) == mode:
            continue
        try:
            os.chmod(path, mode)
        except OSError as exc:
            logger.warning("cannot make %s readable by the inference module: %s", path.name, exc.strerror)
            continue
        changed += 1
    return changed


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
