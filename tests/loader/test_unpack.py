"""Safe extraction: hostile archives are refused with the right code and leave nothing behind."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from loader_module.errors import DiskFullError, InvalidModelError, LoaderError, UnsafeArchiveError
from loader_module.unpack import UnpackedModel, UnpackLimits, unpack_model
from tests.loader.conftest import LABELS, model_zip, onnx_model, tflite_model, zip_bytes

LIMITS = UnpackLimits(max_members=16, max_unpacked_bytes=8 * 1024 * 1024, min_free_bytes=0)


def _unpack(tmp_path: Path, data: bytes, limits: UnpackLimits = LIMITS) -> UnpackedModel:
    archive = tmp_path / "in.zip"
    archive.write_bytes(data)
    return unpack_model(archive, tmp_path / "staging", limits)


def _refused(tmp_path: Path, data: bytes, error: type[LoaderError], limits: UnpackLimits = LIMITS) -> str:
    archive = tmp_path / "in.zip"
    archive.write_bytes(data)
    staging = tmp_path / "staging"
    with pytest.raises(error) as caught:
        unpack_model(archive, staging, limits)
    assert list(staging.iterdir()) == [], "a refused archive must leave nothing in staging"
    assert not (tmp_path / "evil.onnx").exists()
    return str(caught.value)


@pytest.mark.parametrize("runtime", ["onnx", "tflite"])
def test_valid_zip_unpacks_model_and_labels_with_digests(tmp_path: Path, runtime: str) -> None:
    result = _unpack(tmp_path, model_zip(runtime))
    assert result.runtime == runtime
    assert result.model_file == f"model.{runtime}"
    assert result.labels_file == "labels.txt"
    directory = result.directory
    assert (directory / "labels.txt").read_text() == LABELS
    assert set(result.files) == {f"model.{runtime}", "labels.txt"}


def test_one_top_folder_is_stripped(tmp_path: Path) -> None:
    result = _unpack(tmp_path, model_zip("onnx", top_folder="tiny-yolov3"))
    assert result.model_file == "model.onnx"
    assert (result.directory / "model.onnx").read_bytes() == onnx_model()


def test_model_json_names_the_label_file(tmp_path: Path) -> None:
    data = zip_bytes(
        {
            "m.tflite": tflite_model(),
            "classes.names": b"a\nb\n",
            "model.json": json.dumps({"labels": "classes.names"}).encode(),
        }
    )
    result = _unpack(tmp_path, data)
    assert result.labels_file == "classes.names"


@pytest.mark.parametrize(
    "name", ["../evil.onnx", "a/../../evil.onnx", "/tmp/evil.onnx", "C:/evil.onnx", "..\\evil.onnx"]
)
def test_path_escapes_are_unsafe(tmp_path: Path, name: str) -> None:
    data = zip_bytes({name: onnx_model(), "labels.txt": LABELS.encode()})
    _refused(tmp_path, data, UnsafeArchiveError)


def test_symlink_member_is_unsafe(tmp_path: Path) -> None:
    data = zip_bytes({"model.onnx": onnx_model(), "labels.txt": b"x\n"}, symlinks={"link": "/etc/passwd"})
    assert "symbolic link" in _refused(tmp_path, data, UnsafeArchiveError)


def test_zip_bomb_is_unsafe_before_anything_is_written(tmp_path: Path) -> None:
    data = zip_bytes({"model.onnx": onnx_model(), "labels.txt": b"x\n", "zeros.bin": bytes(9 * 1024 * 1024)})
    assert len(data) < 200_000  # compresses ~100:1, yet unpacks over the 8 MiB limit
    assert "more than" in _refused(tmp_path, data, UnsafeArchiveError)


def test_too_many_members_is_unsafe(tmp_path: Path) -> None:
    members = {f"extra{i}.txt": b"x" for i in range(20)}
    data = zip_bytes({"model.onnx": onnx_model(), "labels.txt": b"x\n", **members})
    assert "members" in _refused(tmp_path, data, UnsafeArchiveError)


def test_duplicate_names_are_unsafe(tmp_path: Path) -> None:
    data = zip_bytes({"model.onnx": onnx_model(), "labels.txt": b"x\n", "LABELS.TXT": b"y\n"})
    _refused(tmp_path, data, UnsafeArchiveError)


@pytest.mark.parametrize("names", [("a", "a/b"), ("x/y/z", "X/y"), ("deep/a/b/c", "deep/a")])
def test_a_name_that_is_both_a_file_and_a_folder_is_unsafe(tmp_path: Path, names: tuple[str, str]) -> None:
    members = {"model.onnx": onnx_model(), "labels.txt": LABELS.encode()}
    for order in (names, names[::-1]):
        message = _refused(tmp_path, zip_bytes(members | dict.fromkeys(order, b"x")), UnsafeArchiveError)
        assert "both a file and a folder" in message and str(tmp_path) not in message


def test_two_models_are_invalid(tmp_path: Path) -> None:
    data = zip_bytes({"a.onnx": onnx_model(), "b.tflite": tflite_model(), "labels.txt": b"x\n"})
    assert "2 model files" in _refused(tmp_path, data, InvalidModelError)


def test_no_model_is_invalid(tmp_path: Path) -> None:
    data = zip_bytes({"readme.md": b"hi", "labels.txt": b"x\n"})
    assert "no model file" in _refused(tmp_path, data, InvalidModelError)


def test_a_package_without_a_label_file_is_accepted_for_a_model_carrying_its_names(tmp_path: Path) -> None:
    archive = tmp_path / "in.zip"
    archive.write_bytes(zip_bytes({"yolov8n.onnx": onnx_model()}))
    unpacked = unpack_model(archive, tmp_path / "staging", LIMITS)
    assert (unpacked.model_file, unpacked.labels_file) == ("yolov8n.onnx", None)


@pytest.mark.parametrize("name", ["coco_labels.txt", "classes.names", "my.labels", "LabelMap.TXT"])
def test_a_label_file_is_found_by_its_suffix_not_its_name(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "in.zip"
    archive.write_bytes(zip_bytes({"detect.tflite": tflite_model(), name: b"0  person\r\n16  cat\r\n"}))
    assert unpack_model(archive, tmp_path / "staging", LIMITS).labels_file == name


def test_two_label_candidates_are_invalid_and_named(tmp_path: Path) -> None:
    data = zip_bytes({"model.onnx": onnx_model(), "labels.txt": b"a\n", "README.txt": b"hi\n"})
    message = _refused(tmp_path, data, InvalidModelError)
    assert "README.txt" in message and "labels.txt" in message


def test_a_label_file_mixing_formats_is_invalid(tmp_path: Path) -> None:
    data = zip_bytes({"model.onnx": onnx_model(), "labels.txt": b"0 person\n1 bicycle\ncar\n"})
    assert "mixes" in _refused(tmp_path, data, InvalidModelError)


def test_empty_labels_are_invalid(tmp_path: Path) -> None:
    _refused(tmp_path, zip_bytes({"model.onnx": onnx_model(), "labels.txt": b"\n\n"}), InvalidModelError)


@pytest.mark.parametrize(
    ("name", "payload"),
    [("model.onnx", b"<html>not a model</html>"), ("model.tflite", b"PK\x03\x04 not a flatbuffer")],
)
def test_not_a_model_is_invalid(tmp_path: Path, name: str, payload: bytes) -> None:
    data = zip_bytes({name: payload, "labels.txt": b"x\n"})
    assert "magic" in _refused(tmp_path, data, InvalidModelError)


def test_not_a_zip_is_invalid(tmp_path: Path) -> None:
    _refused(tmp_path, b"this is not a zip file at all", InvalidModelError)


@pytest.mark.parametrize("where", ["local", "central"])
def test_member_name_flagged_utf8_but_not_utf8_is_invalid(tmp_path: Path, where: str) -> None:
    """Found by the unpack fuzzer (seed 8): zipfile raised UnicodeDecodeError, an undocumented error."""
    data = bytearray(model_zip("onnx"))
    signature = b"PK\x03\x04" if where == "local" else b"PK\x01\x02"
    header = data.index(signature)
    flags_at, name_at = (header + 6, header + 30) if where == "local" else (header + 8, header + 46)
    data[flags_at + 1] |= 0x08  # general-purpose flag bit 11: the name is UTF-8
    data[name_at] = 0xED  # starts a three-byte sequence the next byte does not continue
    message = _refused(tmp_path, bytes(data), InvalidModelError)
    assert "not a readable ZIP" in message


@pytest.mark.parametrize(
    ("spec", "message"),
    [(b"{not json", "not valid JSON"), (json.dumps({"labels": "missing.txt"}).encode(), "not in the ZIP")],
)
def test_bad_model_json_is_invalid(tmp_path: Path, spec: bytes, message: str) -> None:
    data = zip_bytes({"model.onnx": onnx_model(), "labels.txt": b"x\n", "model.json": spec})
    assert message in _refused(tmp_path, data, InvalidModelError)


def test_two_label_files_are_invalid(tmp_path: Path) -> None:
    data = zip_bytes({"model.onnx": onnx_model(), "labels.txt": b"x\n", "labelmap.txt": b"y\n"})
    assert "found 2" in _refused(tmp_path, data, InvalidModelError)


def test_not_enough_disk_for_the_unpacked_files(tmp_path: Path) -> None:
    greedy = UnpackLimits(max_members=16, max_unpacked_bytes=1 << 30, min_free_bytes=1 << 60)
    _refused(tmp_path, model_zip("onnx"), DiskFullError, greedy)


def test_volume_filling_up_while_unpacking_is_disk_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object) -> tuple[str, int]:
        del args
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("loader_module.unpack._write_member", full)
    _refused(tmp_path, model_zip("onnx"), DiskFullError)
