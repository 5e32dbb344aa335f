"""Installing into the repository: manifest, atomic rename, `current`, retention."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_shared.repository import ModelRepository
from loader_module.errors import InstallFailedError
from loader_module.install import activate, clean_staging, install_version, prune_versions
from loader_module.unpack import UnpackLimits, unpack_model
from tests.loader.conftest import model_zip

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _install(
    repo: ModelRepository, tmp_path: Path, version: str, *, at: datetime = T0, data: bytes | None = None
) -> str:
    data = data if data is not None else model_zip("onnx")
    archive = tmp_path / f"{version}.zip"
    archive.write_bytes(data)
    unpacked = unpack_model(archive, repo.staging_dir, UnpackLimits(16, 1 << 24, 0))
    sha = hashlib.sha256(data).hexdigest()
    install_version(
        repo,
        unpacked,
        version=version,
        file_name=f"{version}.zip",
        source_sha256=sha,
        source_md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        installed_at=at,
    )
    return sha


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    repository = ModelRepository(tmp_path / "root")
    repository.ensure_layout()
    return repository


def test_install_writes_manifest_and_leaves_staging_empty(repo: ModelRepository, tmp_path: Path) -> None:
    sha = _install(repo, tmp_path, "v1")
    manifest = repo.read_manifest("v1")
    assert manifest.source_sha256 == sha
    assert manifest.runtime == "onnx" and manifest.model_file == "model.onnx"
    model_bytes = (repo.version_dir("v1") / "model.onnx").read_bytes()
    assert manifest.model_sha256 == hashlib.sha256(model_bytes).hexdigest()
    assert list(repo.staging_dir.iterdir()) == []
    assert repo.current_version() is None  # installing does not activate
    activate(repo, "v1")
    assert repo.current_version() == "v1"


def test_reinstalling_the_same_bytes_is_a_no_op(repo: ModelRepository, tmp_path: Path) -> None:
    data = model_zip("onnx")
    _install(repo, tmp_path, "v1", data=data)
    first = repo.read_manifest("v1")
    _install(repo, tmp_path, "v1", data=data)
    assert repo.read_manifest("v1") == first
    assert list(repo.staging_dir.iterdir()) == []


def test_same_version_with_other_bytes_is_refused(repo: ModelRepository, tmp_path: Path) -> None:
    _install(repo, tmp_path, "v1")
    with pytest.raises(InstallFailedError):
        _install(repo, tmp_path, "v1", data=model_zip("tflite"))
    assert repo.read_manifest("v1").runtime == "onnx"


def test_retention_keeps_newest_and_never_the_active_one(repo: ModelRepository, tmp_path: Path) -> None:
    for index in range(5):
        _install(repo, tmp_path, f"v{index}", at=T0 + timedelta(minutes=index))
    activate(repo, "v0")  # rolled back to the oldest
    removed = prune_versions(repo, keep=2)
    assert sorted(removed) == ["v1", "v2"]
    assert repo.installed_versions() == ["v4", "v3", "v0"]
    assert list(repo.staging_dir.iterdir()) == []


def test_retention_keeps_the_base_of_a_pending_delta(repo: ModelRepository, tmp_path: Path) -> None:
    for index in range(4):
        _install(repo, tmp_path, f"v{index}", at=T0 + timedelta(minutes=index))
    activate(repo, "v3")
    removed = prune_versions(repo, keep=1, protect=frozenset({"v1"}))
    assert sorted(removed) == ["v0", "v2"]
    assert repo.installed_versions() == ["v3", "v1"]


def test_clean_staging_removes_leftovers(repo: ModelRepository) -> None:
    (repo.staging_dir / "unpack-x").mkdir()
    (repo.staging_dir / "unpack-x" / "model.onnx").write_bytes(b"partial")
    (repo.staging_dir / "stray").write_bytes(b"x")
    clean_staging(repo)
    assert list(repo.staging_dir.iterdir()) == []
