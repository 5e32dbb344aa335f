"""Publish-side delta pieces needing no server: cache, naming, the pre-upload check, stored models."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge_tools.delta import encode
from edge_tools.delta import make_delta as real_make_delta
from edge_tools.delta.zipscan import read_files
from edge_tools.publish import delta as publish_delta
from edge_tools.publish.delta import (
    DeltaPublishError,
    build_verified_delta,
    cache_package,
    cache_path,
    default_cache_dir,
    delta_file_name,
)
from edge_tools.publish.package import ModelPackage, PackageError, load_package
from edge_tools.publish.zipwriter import PACKED_RLE, pack_member
from tests.shared.test_delta_apply import weights_model
from tests.tools.test_delta_produce import package
from tests.tools.test_zipwriter import raw_member


def test_cache_dir_comes_from_the_environment_in_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EDGE_MODEL_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("EDGE_MODEL_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "edge-model"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "edge-model"


def test_cached_package_is_found_by_version_and_bad_versions_are_refused(tmp_path: Path) -> None:
    path = cache_package(tmp_path / "c", "1.2", ModelPackage(file_name="m.zip", data=b"zip"))
    assert path == cache_path(tmp_path / "c", "1.2") and path.read_bytes() == b"zip"
    with pytest.raises(ValueError):
        cache_path(tmp_path, "../1")


def test_delta_blob_is_named_after_the_zip_and_the_base() -> None:
    assert delta_file_name("tiny-yolo-2.zip", "1.0") == "tiny-yolo-2.from-1.0.emdelta"
    assert delta_file_name("model", "3") == "model.from-3.emdelta"


def test_verified_delta_rebuilds_the_package() -> None:
    base = package(weights_model(1, params=20_000))
    target = ModelPackage(file_name="m-2.zip", data=package(weights_model(1, params=20_000, relative=1e-3)))
    verified = build_verified_delta(base, target, base_version="1", version="2")
    assert verified.build.decision == "delta"
    assert verified.file_name == "m-2.from-1.emdelta"
    assert len(verified.sha256_hex) == 64


def test_a_delta_that_does_not_rebuild_the_package_is_never_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def corrupt(*args: object, **kwargs: object) -> object:
        build = real_make_delta(*args, **kwargs)  # type: ignore[arg-type]
        data = bytearray(build.delta)
        data[-10] ^= 0xFF
        return dataclasses.replace(build, delta=bytes(data))

    monkeypatch.setattr(publish_delta, "make_delta", corrupt)
    base = package(weights_model(1, params=2000))
    target = ModelPackage(file_name="m.zip", data=package(weights_model(1, params=2000, relative=1e-2)))
    with pytest.raises(DeltaPublishError, match="does not rebuild"):
        build_verified_delta(base, target, base_version="1", version="2")


def test_a_base_that_is_not_a_zip_is_reported() -> None:
    target = ModelPackage(file_name="m.zip", data=package(weights_model(1, params=100)))
    with pytest.raises(DeltaPublishError, match="cannot diff against base '1'"):
        build_verified_delta(b"not a zip", target, base_version="1", version="2")


def test_files_too_large_for_generic_codecs_travel_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encode, "MAX_WINDOW_LOG", 19)
    monkeypatch.setattr(encode, "BSDIFF_MAX_BYTES", 0)
    base = package(weights_model(1, params=2000))
    target = package(weights_model(1, params=2000), "changed\nlabels\n")
    build = real_make_delta(base, target, base_version="1", target_version="2")
    kinds = {f.name: (f.kind, set(f.candidates)) for f in build.files}
    assert kinds["coco_classes.txt"] == ("full", {"full"})


def test_store_model_keeps_the_model_uncompressed_and_only_for_folders(tmp_path: Path) -> None:
    folder = tmp_path / "det"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"\x08\x06" + bytes(1000))
    (folder / "labels.txt").write_text("a\n" * 100)
    data = load_package(folder, version="1", store_model=True).data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        methods = {info.filename: info.compress_type for info in archive.infolist()}
    assert methods == {"labels.txt": zipfile.ZIP_DEFLATED, "model.onnx": zipfile.ZIP_STORED}
    (tmp_path / "m.zip").write_bytes(data)
    with pytest.raises(PackageError, match="applies to a folder"):
        load_package(tmp_path / "m.zip", version="1", store_model=True)


def test_repack_rewrites_a_foreign_zip_with_the_same_files_in_delta_ready_chunks(tmp_path: Path) -> None:
    model = np.random.default_rng(9).standard_normal(600_000).astype(np.float32).tobytes()  # 2.4 MB
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("det/", (2023, 3, 4, 5, 6, 8)), b"")
        archive.writestr(
            zipfile.ZipInfo("det/model.onnx", (2023, 3, 4, 5, 6, 8)), model, zipfile.ZIP_DEFLATED
        )
        archive.writestr(
            zipfile.ZipInfo("det/labels.txt", (2023, 3, 4, 5, 6, 10)), "a\nb\n", zipfile.ZIP_DEFLATED
        )
    source = tmp_path / "foreign.zip"
    source.write_bytes(buffer.getvalue())

    assert load_package(source, version="1").data == buffer.getvalue()  # published as it is by default
    package = load_package(source, version="1", repack=True)
    assert package.file_name == "foreign.zip"
    assert read_files(package.data) == read_files(buffer.getvalue())
    with zipfile.ZipFile(io.BytesIO(package.data)) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        assert sorted(infos) == ["det/labels.txt", "det/model.onnx"]  # the directory entry is dropped
        assert infos["det/labels.txt"].date_time == (2023, 3, 4, 5, 6, 10)
    assert (PACKED_RLE, raw_member(package.data, "det/model.onnx")) == pack_member(model)

    stored_model = load_package(source, version="1", repack=True, store_model=True).data
    with zipfile.ZipFile(io.BytesIO(stored_model)) as archive:
        assert archive.getinfo("det/model.onnx").compress_type == zipfile.ZIP_STORED


@pytest.mark.parametrize("damage", ["not-a-zip", "bad-crc"])
def test_repack_of_a_damaged_zip_is_a_package_error(tmp_path: Path, damage: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("model.onnx", b"weights-" * 100)
        archive.writestr("labels.txt", b"a\n")
    data = buffer.getvalue().replace(b"weights-", b"weightz-", 1) if damage == "bad-crc" else b"plain text"
    (tmp_path / "m.zip").write_bytes(data)
    with pytest.raises(PackageError, match="cannot repack"):
        load_package(tmp_path / "m.zip", version="1", repack=True)
