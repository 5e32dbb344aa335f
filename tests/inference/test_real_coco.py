"""The real COCO detectors as users bring them: Coral's SSD-MobileNet-v2 with its `coco_labels.txt`, and
Ultralytics YOLOv8n with its names in its metadata. Plus the Ultralytics decoding on synthetic outputs,
and the bad packages a user can make of them (each a clear `load_failed`, the old model serving).

The models are fetched into the real-model cache (`make fixtures`; fetched here when missing).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge_tools.fixtures import FixtureCatalog, ensure_fixtures
from edge_tools.fixtures.real import COCO_SSD_ID, YOLOV8N_ID
from edge_tools.realmodels import default_real_cache
from inference_module.api.app import create_app
from inference_module.errors import ModelLoadError
from inference_module.metrics import Metrics
from inference_module.runtimes import RuntimeOptions, default_registry
from inference_module.runtimes.geometry import Letterbox, class_aware_nms
from inference_module.runtimes.onnx_ultralytics import UltralyticsDetector, decode_ultralytics, layout_of
from inference_module.service import ModelService
from inference_module.settings import InferenceSettings
from inference_module.slot import ModelSlot
from tests.coco_truth import PHOTOS, assert_found
from tests.inference.conftest import REPO_ROOT
from tests.inference.helpers import install_model, serve

OPTIONS = RuntimeOptions(pipeline_threads=1)


@pytest.fixture(scope="module")
def real_catalog() -> FixtureCatalog:
    return ensure_fixtures(REPO_ROOT / "build" / "fixtures", real_cache=default_real_cache())


def service_for(root: Path) -> tuple[ModelService, ModelSlot]:
    settings = InferenceSettings(model_root=root, edgehub=False)
    slot = ModelSlot()
    return ModelService(settings, slot, Metrics(), default_registry()), slot


# Served over HTTP, names from the file as shipped or from the model


@pytest.mark.integration
@pytest.mark.parametrize("model_id", [COCO_SSD_ID, YOLOV8N_ID])
async def test_real_photographs_are_named_and_boxed_right(
    real_catalog: FixtureCatalog, model_root: Path, model_id: str
) -> None:
    install_model(model_root, real_catalog, model_id)
    app = create_app(InferenceSettings(model_root=model_root, edgehub=False, host="127.0.0.1", port=0))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        info = (await client.get("/model")).json()
        for image_id in PHOTOS:
            photo = real_catalog.path(real_catalog.image(image_id).file).read_bytes()
            response = await client.post("/score", content=photo, headers={"content-type": "image/png"})
            assert response.status_code == 200, response.text
            assert_found(response.json(), image_id)
    expected = "label file coco_labels.txt" if model_id == COCO_SSD_ID else 'ONNX metadata "names"'
    assert (info["labels_source"], info["labels_count"]) == (expected, 90 if model_id == COCO_SSD_ID else 80)


# Bad packages: a clear load failure, the serving model untouched


async def test_a_label_file_shorter_than_the_model_is_refused_and_the_old_model_serves(
    real_catalog: FixtureCatalog, model_root: Path
) -> None:
    install_model(model_root, real_catalog, COCO_SSD_ID, version="v1")
    message = install_model(model_root, real_catalog, COCO_SSD_ID, version="v2", make_current=False)
    assert message.local_labelmap_path is not None
    (model_root / message.local_labelmap_path).write_text("0  person\n1  bicycle\n16  cat\n")
    service, slot = service_for(model_root)
    await service.load_current("startup")
    with pytest.raises(
        ModelLoadError,
        match=r"ends at class id 16 but the model outputs 90 classes \(ids up to 89\): 73 would",
    ):
        await service.load_announcement(message.to_json_bytes())
    assert slot.current is not None and slot.current.identity.version == "v1"


def yolov8n_with_metadata(real_catalog: FixtureCatalog, directory: Path, names: str | None) -> Path:
    model = onnx.load(str(real_catalog.path(real_catalog.model(YOLOV8N_ID).model_file)))
    kept = [prop for prop in model.metadata_props if prop.key != "names"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    if names is not None:
        model.metadata_props.add(key="names", value=names)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "yolov8n.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("names", ["{0: 'person', 1: __import__('os')}", "[1, 2", "42", None])
async def test_garbage_or_missing_names_without_a_label_file_is_a_load_failure(
    real_catalog: FixtureCatalog, tmp_path: Path, names: str | None
) -> None:
    path = yolov8n_with_metadata(real_catalog, tmp_path / "m", names)
    detector = default_registry()["onnx"](path, OPTIONS)
    try:
        from inference_module.labels import model_labels

        with pytest.raises(ModelLoadError, match="class names"):
            model_labels(None, None, detector.metadata)
    finally:
        detector.close()


def test_a_label_file_wins_over_embedded_names_even_garbage_ones(
    real_catalog: FixtureCatalog, tmp_path: Path
) -> None:
    from inference_module.labels import model_labels, parse_labels

    path = yolov8n_with_metadata(real_catalog, tmp_path / "m", "not a dict")
    detector = default_registry()["onnx"](path, OPTIONS)
    try:
        names = "\n".join(f"thing {i}" for i in range(80)) + "\n"
        chosen = model_labels(parse_labels(names), tmp_path / "m" / "classes.names", detector.metadata)
    finally:
        detector.close()
    assert (chosen.source, chosen.names.name(15)) == ("label file classes.names", "thing 15")


def tiny_onnx(path: Path, output_shape: list[int]) -> Path:
    """One image input [1,3,32,32], one output of `output_shape` (a Constant), nothing else."""
    value = helper.make_tensor(
        "c", TensorProto.FLOAT, output_shape, np.zeros(output_shape, np.float32).ravel()
    )
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["out"], value=value)],
        "shape",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, output_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("shape", [[1, 3, 100], [1, 100, 5], [2, 84, 100], [1, 84]])
def test_an_export_with_an_unexpected_shape_matches_no_family(tmp_path: Path, shape: list[int]) -> None:
    with pytest.raises(ModelLoadError, match="match no supported family"):
        default_registry()["onnx"](tiny_onnx(tmp_path / "m.onnx", shape), OPTIONS)


def test_a_named_layout_that_the_output_does_not_have_is_refused(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "m" / "m.onnx", [1, 100, 85])
    (tmp_path / "m" / "model.json").write_text(json.dumps({"family": "yolov8"}))
    with pytest.raises(ModelLoadError, match=r"not the Ultralytics layout \[1,4\+C,N\]"):
        default_registry()["onnx"](path, OPTIONS)


def test_both_layouts_are_recognised_from_the_signature(tmp_path: Path) -> None:
    v8 = default_registry()["onnx"](tiny_onnx(tmp_path / "a.onnx", [1, 6, 100]), OPTIONS)
    v5 = default_registry()["onnx"](tiny_onnx(tmp_path / "b.onnx", [1, 100, 7]), OPTIONS)
    try:
        assert isinstance(v8, UltralyticsDetector) and isinstance(v5, UltralyticsDetector)
        assert (v8.layout, v8.metadata.num_classes) == ("yolov8", 2)
        assert (v5.layout, v5.metadata.num_classes) == ("yolov5", 2)
    finally:
        v8.close()
        v5.close()
    assert layout_of([1, 3, 640, 640], [1, "anchors", 84]) is None


# Decoding on synthetic outputs


def test_v8_decoding_maps_boxes_back_through_the_letterbox() -> None:
    # A 200×100 image in a 64×64 input: scale 0.32, 64×32 placed at top 16.
    box = Letterbox.fit(200, 100, 64, 64)
    assert (box.left, box.top, box.width, box.height) == (0, 16, 64, 32)
    output = np.zeros((1, 4 + 3, 5), np.float32)
    output[0, :4, 2] = [32, 32, 32, 16]  # centre of the input, half its width, a quarter of its height
    output[0, 4 + 2, 2] = 0.9
    raw = decode_ultralytics(output, "yolov8", box)
    assert raw.class_ids.tolist() == [2] and raw.scores.tolist() == pytest.approx([0.9])
    np.testing.assert_allclose(raw.boxes[0], [0.25, 0.25, 0.75, 0.75], atol=1e-6)  # y1, x1, y2, x2


def test_v5_scores_are_objectness_times_class_score() -> None:
    box = Letterbox.fit(64, 64, 64, 64)
    output = np.zeros((1, 4, 5 + 2), np.float32)
    output[0, 0] = [10, 10, 4, 4, 0.5, 0.9, 0.1]
    output[0, 1] = [40, 40, 4, 4, 0.001, 0.9, 0.0]  # objectness too low: 0.0009 < floor
    raw = decode_ultralytics(output, "yolov5", box)
    assert raw.class_ids.tolist() == [0] and raw.scores.tolist() == pytest.approx([0.45])


def test_nms_suppresses_within_a_class_never_across_classes() -> None:
    boxes = np.array([[0, 0, 1, 1], [0, 0, 0.95, 1], [0, 0, 1, 1]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 0, 1], np.int64)
    assert class_aware_nms(boxes, scores, classes, 0.45, 300).tolist() == [0, 2]


def test_an_image_with_nothing_gives_no_detections(real_catalog: FixtureCatalog, tmp_path: Path) -> None:
    source = real_catalog.path(real_catalog.model(YOLOV8N_ID).model_file)
    shutil.copyfile(source, tmp_path / "yolov8n.onnx")
    detector = default_registry()["onnx"](tmp_path / "yolov8n.onnx", OPTIONS)
    try:
        from PIL import Image

        raw = detector.detect(Image.new("RGB", (320, 240), (114, 114, 114)))
    finally:
        detector.close()
    assert float(raw.scores.max(initial=0.0)) < 0.25
