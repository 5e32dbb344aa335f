"""BlazeFace runtime: anchors, letterbox decoding, NMS, and the real model on real photographs.

Tests that take the `real_files` fixture need the pinned upstream files: they use the build cache
`build/real` (what `make fixtures` fills) and fetch into it with pip when it is missing.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from edge_shared.scoring import ScoreResponse
from edge_tools.fixtures import FixtureCatalog, build_ssd_tflite, ensure_fixtures
from edge_tools.realmodels import ASTRONAUT, COFFEE, FACE_MODEL, default_real_cache, fetch_real_files
from inference_module.api import create_app
from inference_module.errors import ModelLoadError
from inference_module.imaging import ImageLimits, decode_image
from inference_module.runtimes.base import RawDetections, RuntimeOptions
from inference_module.runtimes.blazeface import (
    SHORT_RANGE_ANCHORS,
    AnchorOptions,
    BlazeFaceDetector,
    Letterbox,
    decode_detections,
    is_blazeface_model,
    letterbox,
    load_blazeface,
    matches_signature,
    sigmoid,
    ssd_anchors,
    weighted_nms,
)
from inference_module.settings import InferenceSettings
from tests.inference.helpers import install_model, serve

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # pragma: no cover
    from tflite_runtime.interpreter import Interpreter

REAL_CACHE = default_real_cache()
LIMITS = ImageLimits(max_pixels=40_000_000, min_side=16)

# The face in astronaut.png (512×512), measured by hand on 4× and 8× enlargements of the photograph
# with a 10 px (5 px at the chin) grid drawn over it: left and right are the outer edges of the cheeks
# at eye level (x 180 and 268, where hair begins), top is the hairline under the fringe above the
# eyebrows (y 80), bottom is the shadow line under the chin (y 177). Pixels, right/bottom exclusive.
# `test_the_hand_measured_face_box_is_on_the_face` checks it lands on skin below darker hair.
FACE_BOX_PX = (180, 80, 268, 177)


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """IoU of two (left, top, right, bottom) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def face_in_pixels(raw: RawDetections, width: int, height: int) -> tuple[float, float, float, float]:
    """The one detection's box as (left, top, right, bottom) pixels."""
    y1, x1, y2, x2 = (float(v) for v in raw.boxes[0])
    return x1 * width, y1 * height, x2 * width, y2 * height


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def real_files() -> dict[str, Path]:
    return fetch_real_files(REAL_CACHE)


@pytest.fixture(scope="module")
def detector(real_files: dict[str, Path]) -> Iterator[BlazeFaceDetector]:
    loaded = load_blazeface(real_files[FACE_MODEL.name], RuntimeOptions(pipeline_threads=2))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def astronaut(real_files: dict[str, Path]) -> Image.Image:
    return decode_image(real_files[ASTRONAUT.name].read_bytes(), LIMITS)


# Anchors


def test_short_range_anchors_are_896_in_the_documented_layout() -> None:
    anchors = ssd_anchors(128, 128, SHORT_RANGE_ANCHORS)

    assert anchors.shape == (896, 4)
    assert np.all(anchors[:, 2:] == 1.0)  # fixed anchor size
    # Stride 8: a 16×16 grid, 2 anchors per cell, row by row; centres at (i + 0.5) / 16.
    fine = anchors[:512, :2].reshape(16, 16, 2, 2)
    assert np.all(fine[:, :, 0] == fine[:, :, 1])
    centres = (np.arange(16) + 0.5) / 16
    np.testing.assert_allclose(fine[3, :, 0, 0], centres)  # x varies along a row
    np.testing.assert_allclose(fine[:, 3, 0, 1], centres)  # y varies down the rows
    # Strides 16, 16, 16 share an 8×8 grid: 3 layers × 2 anchors = 6 per cell.
    coarse = anchors[512:, :2].reshape(8, 8, 6, 2)
    assert np.all(coarse == coarse[:, :, :1])
    np.testing.assert_allclose(coarse[0, :, 0, 0], (np.arange(8) + 0.5) / 8)
    np.testing.assert_allclose(coarse[:, 0, 0, 1], (np.arange(8) + 0.5) / 8)
    np.testing.assert_allclose(anchors[0], [1 / 32, 1 / 32, 1, 1])
    np.testing.assert_allclose(anchors[-1], [15 / 16, 15 / 16, 1, 1])


def test_anchor_options_change_the_count_as_the_ssd_scheme_says() -> None:
    no_interpolated = AnchorOptions(strides=(8, 16, 16, 16), offset=0.5, interpolated_scale_aspect_ratio=0.0)
    wider = AnchorOptions(strides=(16,), offset=0.5, aspect_ratios=(1.0, 2.0, 0.5))

    assert len(ssd_anchors(128, 128, no_interpolated)) == 16 * 16 + 8 * 8 * 3
    assert len(ssd_anchors(192, 128, wider)) == 12 * 8 * 4
    # A non-square input keeps separate grids per axis.
    assert ssd_anchors(192, 128, wider)[4, 0] == pytest.approx(1.5 / 8)


# Letterbox and decoding (synthetic raw outputs)


def one_face_output(anchor: int, dx: float, dy: float, w: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs with one confident anchor whose regressors are (dx, dy, w, h) input pixels."""
    regressors = np.zeros((896, 16), np.float32)
    regressors[anchor, :4] = (dx, dy, w, h)
    logits = np.full((896,), -100.0, np.float32)
    logits[anchor] = 5.0
    return regressors, logits


@pytest.mark.parametrize(
    ("size", "truth"),
    [
        # 400×200: scaled 0.32 to 128×64, 32 rows of border above and below.
        ((400, 200), (100, 50, 200, 150)),
        # 200×400: scaled 0.32 to 64×128, 32 columns of border left and right.
        ((200, 400), (50, 100, 150, 200)),
    ],
)
def test_decoder_maps_boxes_back_through_the_letterbox(
    size: tuple[int, int], truth: tuple[int, int, int, int]
) -> None:
    width, height = size
    box = Letterbox.fit(width, height, 128, 128)
    left, top, right, bottom = truth
    # The true face in input pixels, computed by hand from the letterbox above.
    in_left, in_top = left * 0.32 + box.left, top * 0.32 + box.top
    in_w, in_h = (right - left) * 0.32, (bottom - top) * 0.32
    anchors = ssd_anchors(128, 128, SHORT_RANGE_ANCHORS)
    index = 7 * 32 + 5 * 2  # stride-8 grid: row 7, column 5, centre (44, 60) px
    assert anchors[index, 0] * 128 == pytest.approx(44) and anchors[index, 1] * 128 == pytest.approx(60)
    regressors, logits = one_face_output(index, in_left + in_w / 2 - 44, in_top + in_h / 2 - 60, in_w, in_h)

    raw = decode_detections(regressors, logits, anchors, box)

    assert (box.width, box.height) == ((128, 64) if width > height else (64, 128))
    assert raw.scores.tolist() == pytest.approx([1 / (1 + np.exp(-5.0))])
    assert raw.class_ids.tolist() == [0]
    np.testing.assert_allclose(
        raw.boxes[0], [top / height, left / width, bottom / height, right / width], atol=1e-5
    )


def test_letterbox_tensor_is_scaled_to_minus_one_one_with_a_black_border() -> None:
    image = Image.new("RGB", (400, 200), (255, 255, 255))

    tensor, box = letterbox(image, 128, 128)

    assert tensor.shape == (1, 128, 128, 3) and tensor.dtype == np.float32
    assert (box.left, box.top, box.width, box.height) == (0, 32, 128, 64)
    assert np.all(tensor[0, :32] == -1.0) and np.all(tensor[0, 96:] == -1.0)
    assert np.all(tensor[0, 32:96] == 1.0)


def test_scores_below_the_candidate_threshold_give_no_detections() -> None:
    anchors = ssd_anchors(128, 128, SHORT_RANGE_ANCHORS)
    regressors, logits = one_face_output(0, 0, 0, 20, 20)
    logits[0] = -0.1  # sigmoid 0.475

    raw = decode_detections(regressors, logits, anchors, Letterbox.fit(128, 128, 128, 128))

    assert raw.boxes.shape == (0, 4) and raw.scores.size == 0


def test_sigmoid_clips_huge_logits_without_overflow() -> None:
    scores = sigmoid(np.array([-1e6, -100.0, 0.0, 100.0, 1e6], np.float32))

    assert scores[2] == pytest.approx(0.5)
    assert scores[0] == scores[1] and scores[0] < 1e-30
    assert scores[3] == scores[4] == pytest.approx(1.0)


def test_weighted_nms_merges_overlapping_boxes_by_score_and_keeps_others() -> None:
    boxes: npt.NDArray[np.float32] = np.array(
        [[0.1, 0.1, 0.3, 0.3], [0.12, 0.12, 0.32, 0.32], [0.6, 0.6, 0.8, 0.8], [0.1, 0.25, 0.3, 0.45]],
        np.float32,
    )
    scores: npt.NDArray[np.float32] = np.array([0.9, 0.6, 0.7, 0.8], np.float32)

    merged, merged_scores = weighted_nms(boxes, scores, 0.3)

    # Box 1 overlaps box 0 (IoU 0.68) and is folded into it; box 3 overlaps box 0 by IoU 0.14 only.
    assert merged_scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    np.testing.assert_allclose(merged[0], (boxes[0] * 0.9 + boxes[1] * 0.6) / 1.5, atol=1e-6)
    np.testing.assert_allclose(merged[1], boxes[3])
    np.testing.assert_allclose(merged[2], boxes[2])


def test_weighted_nms_of_nothing_is_empty() -> None:
    merged, scores = weighted_nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.3)

    assert merged.shape == (0, 4) and scores.shape == (0,)


# Loading


def test_the_real_model_loads_with_its_own_tensor_names_and_896_anchors(detector: BlazeFaceDetector) -> None:
    meta = detector.metadata

    assert meta.runtime == "tflite"
    assert meta.input_shape == (1, 128, 128, 3) and meta.input_dtype == "float32"
    assert meta.input_names == ("input",)
    assert meta.output_names == ("regressors", "classificators")
    np.testing.assert_array_equal(detector.anchors, ssd_anchors(128, 128, SHORT_RANGE_ANCHORS))


def test_signature_tells_blazeface_from_the_ssd_interface(real_files: dict[str, Path]) -> None:
    face = Interpreter(model_path=str(real_files[FACE_MODEL.name]))
    ssd = Interpreter(model_content=build_ssd_tflite("v1", float_input=True))

    assert matches_signature(face.get_input_details(), face.get_output_details())
    assert not matches_signature(ssd.get_input_details(), ssd.get_output_details())


def test_model_files_are_told_apart_by_signature(real_files: dict[str, Path], tmp_path: Path) -> None:
    ssd = tmp_path / "detect.tflite"
    ssd.write_bytes(build_ssd_tflite("v1"))
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer")

    assert is_blazeface_model(real_files[FACE_MODEL.name])
    assert not is_blazeface_model(ssd)
    assert not is_blazeface_model(garbage)


def test_an_ssd_model_is_refused_as_blazeface(tmp_path: Path) -> None:
    path = tmp_path / "detect.tflite"
    path.write_bytes(build_ssd_tflite("v1", float_input=True))

    with pytest.raises(ModelLoadError, match="two outputs"):
        load_blazeface(path, RuntimeOptions())


def test_a_file_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "face.tflite"
    path.write_bytes(b"not a flatbuffer at all")

    with pytest.raises(ModelLoadError, match="could not load"):
        load_blazeface(path, RuntimeOptions())


def test_anchor_options_that_do_not_fit_the_model_are_refused(real_files: dict[str, Path]) -> None:
    interpreter = Interpreter(model_path=str(real_files[FACE_MODEL.name]))
    interpreter.allocate_tensors()

    with pytest.raises(ModelLoadError, match="896 anchors"):
        BlazeFaceDetector([interpreter], AnchorOptions(strides=(8,), offset=0.5))


# The real model on real photographs


def test_the_hand_measured_face_box_is_on_the_face(astronaut: Image.Image) -> None:
    left, top, right, bottom = FACE_BOX_PX
    pixels = np.asarray(astronaut, np.float32)
    cheeks = pixels[top + 30 : bottom - 30, left + 15 : right - 15].reshape(-1, 3).mean(axis=0)
    fringe = pixels[top - 25 : top - 5, left + 10 : right - 10].reshape(-1, 3).mean(axis=0)

    assert cheeks[0] > cheeks[1] > cheeks[2] and cheeks[0] > 150  # skin: red over green over blue
    assert fringe.sum() < cheeks.sum() - 100  # the hair above the box is clearly darker
    assert 0.8 < (right - left) / (bottom - top) < 1.0  # a face is a little taller than wide


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_the_astronauts_face_is_found(detector: BlazeFaceDetector, astronaut: Image.Image, fmt: str) -> None:
    data = encode(astronaut, fmt, quality=90) if fmt == "JPEG" else encode(astronaut, fmt)
    image = decode_image(data, LIMITS)

    raw = detector.detect(image)

    assert raw.scores.shape == (1,) and raw.scores[0] > 0.5
    assert raw.class_ids.tolist() == [0]
    assert iou(face_in_pixels(raw, *image.size), FACE_BOX_PX) >= 0.5


def test_the_face_is_found_after_a_90_degree_exif_rotation(
    detector: BlazeFaceDetector, astronaut: Image.Image
) -> None:
    # Non-square, so a missed rotation or a wrong letterbox axis would show: 512 wide, 400 high.
    upright = astronaut.crop((0, 0, 512, 400))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # pixels as a sideways camera wrote them
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    data = encode(stored, "JPEG", quality=90, exif=exif.tobytes())

    image = decode_image(data, LIMITS)
    raw = detector.detect(image)

    assert stored.size == (400, 512) and image.size == (512, 400)
    assert raw.scores.shape == (1,) and raw.scores[0] > 0.5
    assert iou(face_in_pixels(raw, *image.size), FACE_BOX_PX) >= 0.5


def test_no_face_is_found_in_a_photograph_without_people(
    detector: BlazeFaceDetector, real_files: dict[str, Path]
) -> None:
    image = decode_image(real_files[COFFEE.name].read_bytes(), LIMITS)

    raw = detector.detect(image)

    assert image.size == (600, 400)
    assert raw.scores.size == 0


def test_concurrent_detections_agree(detector: BlazeFaceDetector, astronaut: Image.Image) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: detector.detect(astronaut), range(6)))

    for raw in results:
        np.testing.assert_array_equal(raw.boxes, results[0].boxes)
        np.testing.assert_array_equal(raw.scores, results[0].scores)


# Served through the real API, with the default registry choosing the family from the tensors


@pytest.fixture(scope="module")
def real_catalog(tmp_path_factory: pytest.TempPathFactory) -> FixtureCatalog:
    return ensure_fixtures(tmp_path_factory.mktemp("fixtures"), real_cache=REAL_CACHE)


@pytest.mark.integration
async def test_the_face_detector_is_served_over_http(
    real_catalog: FixtureCatalog, model_root: Path, astronaut: Image.Image
) -> None:
    install_model(model_root, real_catalog, "face-detector-1.0")
    settings = InferenceSettings(model_root=model_root, edgehub=False, host="127.0.0.1", port=0)
    app = create_app(settings)
    photo = encode(astronaut, "JPEG", quality=90)

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/score", content=photo, headers={"content-type": "image/jpeg"})
        annotated = await client.post(
            "/score/annotated", content=photo, headers={"content-type": "image/jpeg"}
        )

    assert response.status_code == 200, response.text
    body = ScoreResponse.model_validate_json(response.content)
    assert (body.model.version, body.model.runtime) == ("face-detector-1.0", "tflite")
    (face,) = body.detections
    assert (face.label, face.class_id) == ("face", 0) and face.score > 0.5
    box = face.box
    found = (box.left * 512, box.top * 512, (box.left + box.width) * 512, (box.top + box.height) * 512)
    assert iou(found, FACE_BOX_PX) >= 0.5
    assert annotated.status_code == 200
    assert Image.open(io.BytesIO(annotated.content)).size == (512, 512)
