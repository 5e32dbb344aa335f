"""Model repository layout (architecture §6): path resolution never leaves the root; `current` is atomic."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_shared.errors import RepositoryError, UnsafePathError
from edge_shared.repository import ModelManifest, ModelRepository


def install_fake_version(repo: ModelRepository, version: str, installed_at: datetime) -> None:
    directory = repo.version_dir(version)
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(b"onnx")
    (directory / "labels.txt").write_text("a\n")
    repo.write_manifest(
        directory,
        ModelManifest(
            version=version,
            file_name=f"{version}.zip",
            runtime="onnx",
            model_file="model.onnx",
            labels_file="labels.txt",
            files={"model.onnx": "00" * 32, "labels.txt": "11" * 32},
            source_sha256="22" * 32,
            installed_at=installed_at,
        ),
    )


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    repository = ModelRepository(tmp_path / "root")
    repository.ensure_layout()
    return repository


def test_resolve_accepts_paths_inside(repo: ModelRepository) -> None:
    assert repo.resolve("models/1/model.onnx") == (repo.root / "models/1/model.onnx").resolve()


@pytest.mark.parametrize(
    "path", ["../outside", "models/../../outside", "/etc/passwd", "C:/Windows", "C:\\x", "", "a\x00b"]
)
def test_resolve_refuses_escapes(repo: ModelRepository, path: str) -> None:
    with pytest.raises(UnsafePathError):
        repo.resolve(path)


def test_resolve_refuses_a_symlink_out_of_the_root(repo: ModelRepository, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, repo.models_dir / "link")
    with pytest.raises(UnsafePathError, match="outside"):
        repo.resolve("models/link")


def test_resolve_allows_a_symlink_that_stays_inside(repo: ModelRepository) -> None:
    (repo.models_dir / "target").write_text("x")
    os.symlink(repo.models_dir / "target", repo.models_dir / "inner")
    assert repo.resolve("models/inner") == (repo.models_dir / "target").resolve()


def test_current_is_none_before_first_install(repo: ModelRepository) -> None:
    assert repo.current_version() is None


def test_set_current_requires_an_installed_version(repo: ModelRepository) -> None:
    with pytest.raises(RepositoryError):
        repo.set_current("1")
    install_fake_version(repo, "1", datetime.now(UTC))
    repo.set_current("1")
    assert repo.current_version() == "1"
    assert not [p for p in repo.root.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_current_is_reported(repo: ModelRepository) -> None:
    repo.current_path.write_text("../../etc\n")
    with pytest.raises(RepositoryError, match="current"):
        repo.current_version()


def test_installed_versions_newest_first_and_skips_junk(repo: ModelRepository) -> None:
    now = datetime.now(UTC)
    install_fake_version(repo, "old", now - timedelta(hours=2))
    install_fake_version(repo, "new", now)
    install_fake_version(repo, "mid", now - timedelta(hours=1))
    (repo.models_dir / "half-installed").mkdir()
    assert repo.installed_versions() == ["new", "mid", "old"]
    model, labels, manifest = repo.model_paths("mid")
    assert model.name == "model.onnx" and labels is not None and labels.name == "labels.txt"
    assert manifest.version == "mid"


def test_manifest_with_escaping_file_name_is_refused(repo: ModelRepository) -> None:
    install_fake_version(repo, "evil", datetime.now(UTC))
    manifest_path = repo.version_dir("evil") / "manifest.json"
    manifest_path.write_text(manifest_path.read_text().replace('"model.onnx"', '"../../../etc/passwd"', 1))
    with pytest.raises(UnsafePathError):
        repo.model_paths("evil")
