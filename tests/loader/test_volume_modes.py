"""The model volume contract: what the inference module reads is readable by another user, whatever the
loader's umask, and what earlier loaders installed privately is repaired at start."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_shared.repository import ModelRepository
from loader_module.install import activate, share_installed
from tests.loader.conftest import onnx_model
from tests.loader.test_install import _install


@pytest.fixture(autouse=True)
def private_umask() -> Iterator[None]:
    """The strictest umask a service could run with: modes must not depend on it."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    repository = ModelRepository(tmp_path / "root")
    repository.ensure_layout()
    return repository


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _nested_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("detector/model.onnx", onnx_model())
        zf.writestr("detector/labelmap.txt", "person\ncar\n")
        zf.writestr("detector/extra/notes/readme.md", "notes")
    return buffer.getvalue()


def _published(repo: ModelRepository) -> dict[str, int]:
    found = {"models": _mode(repo.models_dir), "current": _mode(repo.current_path)}
    for folder, dirs, files in os.walk(repo.models_dir):
        for name in dirs + files:
            path = Path(folder, name)
            found[path.relative_to(repo.root).as_posix()] = _mode(path)
    return found


def test_installed_tree_and_current_are_readable_by_other_users(
    repo: ModelRepository, tmp_path: Path
) -> None:
    _install(repo, tmp_path, "v1", data=_nested_zip())
    activate(repo, "v1")
    modes = _published(repo)
    assert modes == {
        "models": 0o755,
        "current": 0o644,
        "models/v1": 0o755,
        "models/v1/extra": 0o755,
        "models/v1/extra/notes": 0o755,
        "models/v1/extra/notes/readme.md": 0o644,
        "models/v1/model.onnx": 0o644,
        "models/v1/labelmap.txt": 0o644,
        "models/v1/manifest.json": 0o644,
    }


def test_downloads_and_staging_are_private_to_the_loader_whatever_the_umask(tmp_path: Path) -> None:
    os.umask(0o022)  # the common default would make them 0755
    repository = ModelRepository(tmp_path / "root")
    repository.ensure_layout()
    assert _mode(repository.downloads_dir) == _mode(repository.staging_dir) == 0o700
    assert _mode(repository.models_dir) == 0o755


def test_an_existing_private_install_is_repaired_at_start(repo: ModelRepository, tmp_path: Path) -> None:
    _install(repo, tmp_path, "v1", data=_nested_zip())
    activate(repo, "v1")
    expected = _published(repo)
    # What the loader before this fix left: 0700 folders (mkdtemp), 0600 manifest and current.
    for path in [repo.version_dir("v1"), repo.version_dir("v1") / "extra"]:
        path.chmod(0o700)
    for path in [repo.current_path, repo.version_dir("v1") / "manifest.json"]:
        path.chmod(0o600)
    repo.models_dir.chmod(0o700)
    repo.ensure_layout()
    assert share_installed(repo) == 4
    assert _published(repo) == expected
    assert share_installed(repo) == 0  # nothing left to change: no needless writes on every start


def test_repair_never_follows_a_symlink_out_of_the_tree(repo: ModelRepository, tmp_path: Path) -> None:
    _install(repo, tmp_path, "v1")
    outside = tmp_path / "secret"
    outside.write_text("x")
    outside.chmod(0o600)
    (repo.version_dir("v1") / "link").symlink_to(outside)
    share_installed(repo)
    assert _mode(outside) == 0o600
