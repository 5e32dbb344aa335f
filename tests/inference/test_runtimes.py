"""Both runtimes on the fixture models: interfaces read from the model, objects found where they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_tools.fixtures import FixtureCatalog
from inference_module.errors import ModelLoadError
from inference_module.imaging import ImageLimits, decode_image
from inference_module.labels import load_labels
from inference_module.postprocess import select_detections
from inference_module.runtimes import default_registry
from inference_module.runtimes.base import RuntimeOptions
from inference_module.runtimes.onnx_yolo import decode_yolo_outputs

OPTIONS = RuntimeOptions(pipeline_threads=2)
LIMITS = ImageLimits(max_pixels=40_000_000, min_side=8)
TOLERANCE = 0.05


@pytest.mark.parametrize(
    ("model_id", "image_id"),
    [
        ("tiny-yolo-1", "one-square-jpeg"),
        ("tiny-yolo-1", "one-square-png"),
        ("tiny-yolo-1-m3", "one-square-png"),
        ("tiny-yolo-2", "one-square-jpeg"),
        ("ssd-lite-1", "one-square-jpeg"),
        ("ssd-lite-1", "one-square-png"),
        ("ssd-lite-1", "square-300-png"),
        ("ssd-lite-1-float", "square-300-png"),
        ("ssd-lite-2", "square-300-png"),
    ],
)
def test_fixture_object_is_found_where_it_is(catalog: FixtureCatalog, model_id: str, image_id: str) -> None:
    fixture = catalog.model(model_id)
    sample = catalog.image(image_id)
    detector = default_registry()[fixture.runtime](catalog.path(fixture.model_file), OPTIONS)
    labels = load_labels(catalog.path(fixture.label_file))
    try:
        image = decode_image(catalog.path(sample.file).read_bytes(), LIMITS)
        found = select_detections(detector.detect(image), labels, threshold=0.5, max_detections=10)
    finally:
        detector.close()
    assert len(found) == 1
    (item,) = found
    truth = sample.boxes[0].normalized
    assert item.label == fixture.class_label
    assert abs(item.left - truth.left) < TOLERANCE
    assert abs(item.top - truth.top) < TOLERANCE
    assert abs(item.width - truth.width) < TOLERANCE
    assert abs(item.height - truth.height) < TOLERANCE


@pytest.mark.parametrize("model_id", ["tiny-yolo-1", "ssd-lite-1"])
def test_nothing_is_found_on_black(catalog: FixtureCatalog, model_id: str) -> None:
    fixture = catalog.model(model_id)
    detector = default_registry()[fixture.runtime](catalog.path(fixture.model_file), OPTIONS)
    try:
        raw = detector.detect(
            decode_image(catalog.path(catalog.image("black-png").file).read_bytes(), LIMITS)
        )
    finally:
        detector.close()
    assert raw.scores.size == 0 or float(raw.scores.max()) < 0.5


def test_metadata_is_read_from_the_models(catalog: FixtureCatalog) -> None:
    onnx = default_registry()["onnx"](catalog.path(catalog.model("tiny-yolo-1").model_file), OPTIONS)
    tflite = default_registry()["tflite"](catalog.path(catalog.model("ssd-lite-1").model_file), OPTIONS)
    floaty = default_registry()["tflite"](catalog.path(catalog.model("ssd-lite-1-float").model_file), OPTIONS)
    try:
        assert onnx.metadata.input_shape == (1, 3, 416, 416)
        assert onnx.metadata.input_names == ("input_1", "image_shape")
        assert onnx.metadata.output_names == ("yolonms_layer_1", "yolonms_layer_1:1", "yolonms_layer_1:2")
        assert tflite.metadata.input_shape == (1, 300, 300, 3)
        assert tflite.metadata.input_dtype == "uint8"
        assert floaty.metadata.input_dtype == "float32"
    finally:
        for detector in (onnx, tflite, floaty):
            detector.close()


def test_letterbox_keeps_aspect_and_pads_with_grey(catalog: FixtureCatalog) -> None:
    from inference_module.runtimes.onnx_yolo import load_onnx_yolo

    detector = load_onnx_yolo(catalog.path(catalog.model("tiny-yolo-1").model_file), OPTIONS)
    try:
        tensor, shape = detector.preprocess(Image.new("RGB", (832, 416), (255, 255, 255)))
        assert shape.tolist() == [[416.0, 832.0]]
        assert tensor[0, :, 0, 0].tolist() == pytest.approx([128 / 255] * 3)  # top band is grey
        assert tensor[0, :, 208, 208].tolist() == pytest.approx([1.0] * 3)  # the image is in the middle
        assert tensor[0, :, 415, 0].tolist() == pytest.approx([128 / 255] * 3)
    finally:
        detector.close()


def test_yolo_indices_of_both_layouts_and_none_decode() -> None:
    import numpy as np

    boxes = np.array([[[10, 20, 30, 60], [0, 0, 48, 64]]], np.float32)
    scores = np.zeros((1, 3, 2), np.float32)
    scores[0, 2, 1] = 0.7
    for indices in (np.array([[[0, 2, 1]]], np.int32), np.array([[0, 2, 1]], np.int32)):
        raw = decode_yolo_outputs(boxes, scores, indices, (64, 48))
        assert raw.class_ids.tolist() == [2]
        assert raw.scores.tolist() == pytest.approx([0.7])
        assert raw.boxes.tolist() == [[0.0, 0.0, 1.0, 1.0]]
    assert decode_yolo_outputs(boxes, scores, np.zeros((1, 0, 3), np.int32), (64, 48)).scores.size == 0


@pytest.mark.parametrize(("runtime", "suffix"), [("onnx", ".onnx"), ("tflite", ".tflite")])
def test_corrupt_model_files_fail_with_a_load_error(tmp_path: Path, runtime: str, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x00not a model at all" * 100)
    with pytest.raises(ModelLoadError):
        default_registry()[runtime](path, OPTIONS)  # type: ignore[index]


def test_an_onnx_model_without_the_yolo_interface_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    path = tmp_path / "identity.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match="match no supported family"):
        default_registry()["onnx"](path, OPTIONS)


def test_float_tflite_input_is_scaled_to_minus_one_one(catalog: FixtureCatalog) -> None:
    from inference_module.runtimes.tflite_ssd import load_tflite_ssd

    detector = load_tflite_ssd(catalog.path(catalog.model("ssd-lite-1-float").model_file), OPTIONS)
    try:
        image = Image.new("RGB", (300, 300), (0, 255, 0))
        tensor = detector.preprocess(image)
        assert tensor.dtype == np.float32 and tensor.shape == (1, 300, 300, 3)
        assert tensor[0, 10, 10].tolist() == pytest.approx([-1.0, 1.0, -1.0])
    finally:
        detector.close()
