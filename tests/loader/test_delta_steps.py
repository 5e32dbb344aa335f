"""The delta path's blocking steps: when a desired `Delta` is usable, and the checks on what it rebuilds."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge_shared.delta import FORMAT
from edge_shared.desired import DesiredModel, parse_desired
from edge_shared.repository import MANIFEST_FILE, ModelManifest, ModelRepository
from edge_tools.delta import make_delta
from loader_module.delta import rebuild_zip, usable_base
from loader_module.download import DownloadResult
from loader_module.errors import DeltaUnusableError
from loader_module.install import install_version
from loader_module.unpack import UnpackLimits, unpack_model
from tests.shared.test_delta_apply import yolo_zip

V1, V2 = yolo_zip("v1"), yolo_zip("v2")


def _desired(delta: bytes, **props: Any) -> DesiredModel:
    delta_changes = props.pop("Delta", {})
    spec = {
        "BaseVersion": "1.0",
        "DownloadUrl": "https://h/d.emdelta?sig=s",
        "ContentSHA256": hashlib.sha256(delta).hexdigest(),
        "Format": FORMAT,
    }
    return parse_desired(
        {
            "FileName": "m-2.0.zip",
            "DownloadUrl": "https://h/m.zip?sig=s",
            "ContentSHA256": hashlib.sha256(V2).hexdigest(),
            **props,
            "Delta": {**spec, **delta_changes},
        }
    )


def _install_base(repo: ModelRepository, tmp_path: Path) -> ModelManifest:
    archive = tmp_path / "base.zip"
    archive.write_bytes(V1)
    unpacked = unpack_model(archive, repo.staging_dir, UnpackLimits(16, 1 << 24, 0))
    return install_version(
        repo,
        unpacked,
        version="1.0",
        file_name="m-1.0.zip",
        source_sha256=hashlib.sha256(V1).hexdigest(),
        source_md5=hashlib.md5(V1, usedforsecurity=False).hexdigest(),
        installed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def _downloaded(path: Path, data: bytes) -> DownloadResult:
    path.write_bytes(data)
    md5 = hashlib.md5(data, usedforsecurity=False).digest()
    return DownloadResult(path, len(data), md5, hashlib.sha256(data).digest(), len(data), 1)


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    repository = ModelRepository(tmp_path / "root")
    repository.ensure_layout()
    return repository


@pytest.fixture(scope="module")
def delta() -> bytes:
    return make_delta(V1, V2, base_version="1.0", target_version="2.0").delta


def test_usable_base_returns_the_base_manifest(repo: ModelRepository, tmp_path: Path, delta: bytes) -> None:
    installed = _install_base(repo, tmp_path)
    spec = _desired(delta).delta
    assert spec is not None and usable_base(repo, spec) == installed


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Format": "emdelta/2"}, "unsupported delta Format"),
        ({"BaseVersion": "0.5"}, "is not installed"),
    ],
)
def test_unusable_before_any_download(
    change: dict[str, str], reason: str, repo: ModelRepository, tmp_path: Path, delta: bytes
) -> None:
    _install_base(repo, tmp_path)
    spec = _desired(delta, Delta=change).delta
    assert spec is not None
    with pytest.raises(DeltaUnusableError, match=reason):
        usable_base(repo, spec)


def test_base_with_an_unreadable_manifest_is_unusable(
    repo: ModelRepository, tmp_path: Path, delta: bytes
) -> None:
    _install_base(repo, tmp_path)
    (repo.version_dir("1.0") / MANIFEST_FILE).write_text("{not json")
    spec = _desired(delta).delta
    assert spec is not None
    with pytest.raises(DeltaUnusableError, match="no readable manifest"):
        usable_base(repo, spec)


def test_rebuild_gives_the_target_zip_and_its_digests(
    repo: ModelRepository, tmp_path: Path, delta: bytes
) -> None:
    base = _install_base(repo, tmp_path)
    out = repo.downloads_dir / "t.rebuilt.zip"
    rebuilt = rebuild_zip(
        repo, _desired(delta), base, _downloaded(tmp_path / "d", delta), out, max_output_bytes=1 << 30
    )
    assert out.read_bytes() == V2
    assert rebuilt.result.sha256 == hashlib.sha256(V2).digest() and rebuilt.result.size == len(V2)
    assert rebuilt.result.md5 == hashlib.md5(V2, usedforsecurity=False).digest()
    assert rebuilt.result.fetched == len(delta) and rebuilt.bytes_saved == len(V2) - len(delta)


@pytest.mark.parametrize(
    ("props", "reason"),
    [
        ({"ContentMD5": "0" * 32}, "ChecksumMismatchError"),  # rebuilt bytes are not the desired ones
        ({"Size": len(V2) + 1}, "ChecksumMismatchError"),
        ({"ContentSHA256": "1" * 64}, "DeltaIntegrityError"),
    ],
)
def test_rebuilt_zip_with_other_digests_is_unusable_and_removed(
    props: dict[str, Any], reason: str, repo: ModelRepository, tmp_path: Path, delta: bytes
) -> None:
    base = _install_base(repo, tmp_path)
    out = repo.downloads_dir / "t.rebuilt.zip"
    with pytest.raises(DeltaUnusableError, match=reason):
        rebuild_zip(
            repo,
            _desired(delta, **props),
            base,
            _downloaded(tmp_path / "d", delta),
            out,
            max_output_bytes=1 << 30,
        )
    assert not out.exists()


def test_output_over_the_download_limit_is_unusable(
    repo: ModelRepository, tmp_path: Path, delta: bytes
) -> None:
    base = _install_base(repo, tmp_path)
    out = repo.downloads_dir / "t.rebuilt.zip"
    with pytest.raises(DeltaUnusableError, match="DeltaFormatError"):
        rebuild_zip(
            repo, _desired(delta), base, _downloaded(tmp_path / "d", delta), out, max_output_bytes=100
        )


def test_io_error_while_applying_is_unusable(repo: ModelRepository, tmp_path: Path, delta: bytes) -> None:
    base = _install_base(repo, tmp_path)
    out = tmp_path / "no-such-folder" / "t.rebuilt.zip"
    with pytest.raises(DeltaUnusableError, match="FileNotFoundError"):
        rebuild_zip(
            repo, _desired(delta), base, _downloaded(tmp_path / "d", delta), out, max_output_bytes=1 << 30
        )
