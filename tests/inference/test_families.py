"""Family selection: `model.json` names the family; without it the tensor signature decides."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_tools.fixtures import FixtureCatalog
from edge_tools.realmodels import FACE_MODEL, default_real_cache, fetch_real_files
from inference_module.errors import ModelLoadError
from inference_module.runtimes import RuntimeOptions, default_registry
from inference_module.runtimes.blazeface import BlazeFaceDetector
from inference_module.runtimes.families import MAX_DESCRIPTOR_BYTES, read_family

OPTIONS = RuntimeOptions(pipeline_threads=1)


@pytest.fixture(scope="module")
def face_model() -> Path:
    return fetch_real_files(default_real_cache())[FACE_MODEL.name]


def place(tmp_path: Path, source: Path, name: str, descriptor: object | None = None) -> Path:
    target = tmp_path / name
    shutil.copyfile(source, target)
    if descriptor is not None:
        text = descriptor if isinstance(descriptor, str) else json.dumps(descriptor)
        (tmp_path / "model.json").write_text(text)
    return target


def test_blazeface_is_recognised_by_its_tensors(face_model: Path, tmp_path: Path) -> None:
    detector = default_registry()["tflite"](place(tmp_path, face_model, "face.tflite"), OPTIONS)
    try:
        assert isinstance(detector, BlazeFaceDetector)
    finally:
        detector.close()


def test_ssd_is_the_default_tflite_family(catalog: FixtureCatalog, tmp_path: Path) -> None:
    ssd = catalog.path(catalog.model("ssd-lite-1").model_file)
    detector = default_registry()["tflite"](place(tmp_path, ssd, "detect.tflite"), OPTIONS)
    try:
        assert not isinstance(detector, BlazeFaceDetector)
        assert detector.metadata.runtime == "tflite"
    finally:
        detector.close()


def test_model_json_names_the_family(face_model: Path, tmp_path: Path) -> None:
    path = place(tmp_path, face_model, "face.tflite", {"family": "blazeface", "note": "ignored"})
    assert read_family(tmp_path) == "blazeface"
    detector = default_registry()["tflite"](path, OPTIONS)
    detector.close()


def test_a_family_of_the_other_engine_is_refused(
    face_model: Path, catalog: FixtureCatalog, tmp_path: Path
) -> None:
    path = place(tmp_path, face_model, "face.tflite", {"family": "yolo"})
    with pytest.raises(ModelLoadError, match="not a TFLite family"):
        default_registry()["tflite"](path, OPTIONS)
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    onnx = place(
        onnx_dir, catalog.path(catalog.model("tiny-yolo-1").model_file), "model.onnx", {"family": "ssd"}
    )
    with pytest.raises(ModelLoadError, match="not a ONNX family"):
        default_registry()["onnx"](onnx, OPTIONS)


def test_a_model_json_that_names_the_wrong_model_fails_to_load(
    catalog: FixtureCatalog, tmp_path: Path
) -> None:
    ssd = catalog.path(catalog.model("ssd-lite-1").model_file)
    with pytest.raises(ModelLoadError):
        default_registry()["tflite"](place(tmp_path, ssd, "detect.tflite", {"family": "blazeface"}), OPTIONS)


@pytest.mark.parametrize(
    "descriptor", ["not json", '{"family": "resnet"}', '["blazeface"]', "x" * (MAX_DESCRIPTOR_BYTES + 1)]
)
def test_a_bad_model_json_is_refused_with_a_clear_error(tmp_path: Path, descriptor: str) -> None:
    (tmp_path / "model.json").write_text(descriptor)
    with pytest.raises(ModelLoadError, match="model.json"):
        read_family(tmp_path)


def test_no_model_json_means_no_declared_family(tmp_path: Path) -> None:
    assert read_family(tmp_path) is None
