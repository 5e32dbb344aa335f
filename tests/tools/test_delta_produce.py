"""The delta producer: codec choice, size goals, fallback to the full ZIP, tensors, ZIP rebuild recipes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import onnx
import pytest

from edge_shared.delta import apply_delta, read_delta_header
from edge_shared.delta.container import GenericFile, TensorFile
from edge_tools.delta import make_delta
from edge_tools.delta.tensors import find_tensors
from edge_tools.delta.zipscan import ZipScanError, read_files, scan_zip
from edge_tools.fixtures import build_ssd_tflite, build_yolo_onnx, coco_labels_text, make_model_zip
from tests.shared.test_delta_apply import install_base, weights_model


def package(model: bytes, labels: str | None = None) -> bytes:
    return make_model_zip(model, "model.onnx", labels or coco_labels_text(), "coco_classes.txt")


def round_trip(tmp_path: Path, base_zip: bytes, delta: bytes) -> bytes:
    install_base(base_zip, tmp_path / "base")
    (tmp_path / "d.emdelta").write_bytes(delta)
    apply_delta(tmp_path / "d.emdelta", tmp_path / "base", tmp_path / "out.zip")
    return (tmp_path / "out.zip").read_bytes()


def test_label_only_change_is_under_4_kb_and_reuses_the_model(tmp_path: Path) -> None:
    model = weights_model(1)
    base = package(model)
    target = package(model, coco_labels_text().replace("person", "human", 1))
    build = make_delta(base, target, base_version="1", target_version="2")
    assert build.decision == "delta"
    assert len(build.delta) < 4096
    assert {f.name: f.kind for f in build.files}["model.onnx"] == "same"
    assert round_trip(tmp_path, base, build.delta) == target


def test_fine_tune_travels_as_tensor_delta_smaller_than_any_generic_diff(tmp_path: Path) -> None:
    base = package(weights_model(1))
    target = package(weights_model(1, relative=1e-3, tweak_seed=7))
    build = make_delta(base, target, base_version="1", target_version="2")
    report = {f.name: f for f in build.files}["model.onnx"]
    assert report.kind == "tensor-delta"
    generic, tensor = report.candidates["generic-delta"], report.candidates["tensor-delta"]
    assert generic is not None and tensor is not None and tensor < 0.75 * generic
    assert build.decision == "delta" and build.ratio < 0.65
    entry = next(e for e in read_delta_header(_write(tmp_path, build.delta)).files if e.name == "model.onnx")
    assert isinstance(entry, TensorFile)
    assert {"layer0", "layer1", "layer2"} <= {t.name for t in entry.tensors}
    assert round_trip(tmp_path, base, build.delta) == target


def test_full_retrain_falls_back_to_the_full_zip() -> None:
    base = package(weights_model(1))
    target = package(weights_model(2))
    build = make_delta(base, target, base_version="1", target_version="2")
    assert build.decision == "full"
    assert build.ratio > 0.85
    assert "over 85%" in build.reason


def test_generic_delta_records_both_codecs_and_keeps_the_smaller(tmp_path: Path) -> None:
    labels = coco_labels_text()
    base = package(build_yolo_onnx("v1"), labels)
    target = package(build_yolo_onnx("v1"), labels.replace("car", "automobile"))
    build = make_delta(base, target, base_version="1", target_version="2")
    entry = next(
        e for e in read_delta_header(_write(tmp_path, build.delta)).files if e.name == "coco_classes.txt"
    )
    assert isinstance(entry, GenericFile)
    sizes = entry.patch.comparison
    assert set(sizes) == {"bsdiff4", "zstd-ref"}
    assert all(size is not None for size in sizes.values())
    assert entry.patch.blob.length == min(size for size in sizes.values() if size is not None)


def _write(tmp_path: Path, delta: bytes) -> Path:
    path = tmp_path / "inspect.emdelta"
    path.write_bytes(delta)
    return path


def test_onnx_tensor_regions_are_the_raw_data_of_each_initializer() -> None:
    data = weights_model(3, params=1000)
    regions = {r.name: r for r in find_tensors("m.onnx", data)}
    for initializer in onnx.load_from_string(data).graph.initializer:
        region = regions[initializer.name]
        assert data[region.offset : region.offset + region.length] == initializer.raw_data
        assert region.shape == tuple(initializer.dims) and region.dtype == initializer.data_type


def test_tflite_tensor_regions_are_buffers_of_named_tensors() -> None:
    from ai_edge_litert import schema_py_generated as schema

    data = build_ssd_tflite("v1")
    regions = find_tensors("m.tflite", data)
    assert regions
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    buffers = {bytes(b.data.tobytes()) for b in model.buffers if b.data is not None}
    for region in regions:
        assert data[region.offset : region.offset + region.length] in buffers


@pytest.mark.parametrize(
    ("name", "data"), [("x.onnx", b"\xff\xff\xff"), ("x.tflite", b"1234TFL3"), ("a.txt", b"x")]
)
def test_unparsable_or_unknown_files_have_no_tensors(name: str, data: bytes) -> None:
    assert find_tensors(name, data) == []


def _zip(entries: list[tuple[str, bytes, int, int | None]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, method, level in entries:
            archive.writestr(
                zipfile.ZipInfo(name, (2024, 5, 6, 7, 8, 10)), data, compress_type=method, compresslevel=level
            )
    return buffer.getvalue()


def test_zips_from_other_writers_are_rebuilt_exactly(tmp_path: Path) -> None:
    model = build_yolo_onnx("v2")
    base = package(build_yolo_onnx("v1"))
    target = _zip(
        [
            ("pkg/", b"", zipfile.ZIP_STORED, None),
            ("pkg/model.onnx", model, zipfile.ZIP_DEFLATED, 9),
            ("pkg/coco_classes.txt", coco_labels_text().encode(), zipfile.ZIP_STORED, None),
            ("pkg/model.json", b'{"labels": "coco_classes.txt"}', zipfile.ZIP_BZIP2, None),
        ]
    )
    scanned = scan_zip(target)
    assert {m.file: (m.method, m.level) for m in scanned.members} == {
        "model.onnx": (8, 9),
        "coco_classes.txt": (0, 0),
    }
    assert scanned.verbatim == ["model.json"]  # bzip2 is kept whole in the skeleton
    build = make_delta(base, target, base_version="1", target_version="2")
    assert round_trip(tmp_path, base, build.delta) == target


def test_duplicate_unpacked_names_are_refused() -> None:
    target = _zip([("a/model.onnx", b"1", 0, None), ("a/MODEL.onnx", b"2", 0, None)])
    with pytest.raises(ZipScanError, match="same name"):
        read_files(target)
    with pytest.raises(ZipScanError, match="not a ZIP"):
        scan_zip(b"not a zip")
