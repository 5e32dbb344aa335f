"""What must hold on the model volume at every instant, whatever was killed or cut (architecture §6)."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from pathlib import Path

from edge_shared.repository import MANIFEST_FILE, ModelRepository


def rng_for(seed: int, name: str) -> random.Random:
    """A generator for one scenario: the run's printed seed plus the scenario's name replays it."""
    return random.Random(f"{seed}:{name}")


def poll(condition: Callable[[], bool], *, within: float) -> bool:
    """Check a cheap local condition every 2 ms until it holds or the deadline passes (False then):
    fault points need millisecond timing, which an event from another process cannot give."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def check_version_dir(repo: ModelRepository, directory: Path) -> None:
    """A folder under `models/` is a complete install: a valid manifest naming it, every file present
    with the digest the manifest records, and nothing else."""
    assert directory.is_dir(), f"{directory.name} under models/ is not a folder"
    assert (directory / MANIFEST_FILE).is_file(), f"partial version {directory.name} is visible (no manifest)"
    manifest = repo.read_manifest(directory.name)
    assert manifest.version == directory.name
    on_disk = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    assert on_disk == set(manifest.files) | {MANIFEST_FILE}, f"{directory.name}: files differ from manifest"
    for name, digest in manifest.files.items():
        assert _sha256(directory / name) == digest, f"{directory.name}/{name} does not match its digest"
    assert manifest.model_file in manifest.files and manifest.labels_file in manifest.files


def assert_consistent(root: Path, *, installed_before: bool) -> str | None:
    """Every `models/<v>` complete and `current` naming one of them (absent only before any install);
    returns the current version."""
    repo = ModelRepository(root)
    if repo.models_dir.is_dir():
        for entry in repo.models_dir.iterdir():
            check_version_dir(repo, entry)
    current = repo.current_version()
    if current is None:
        assert not installed_before, "`current` vanished after a version was installed"
        return None
    assert (repo.models_dir / current / MANIFEST_FILE).is_file(), f"`current` names {current}, not installed"
    return current
