"""The fixture generator: models with the zoo interfaces that really detect, built reproducibly."""

import base64
import io
import subprocess
import sys
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from edge_tools.fixtures import (
    COCO_NAMES,
    build_ssd_tflite,
    build_yolo_onnx,
    coco_labels_text,
    digests,
    ensure_fixtures,
    generate_fixtures,
    heavy_branch_flops,
    load_catalog,
    make_model_zip,
    make_noise_image,
    make_square_image,
    ssd_labelmap_text,
)
from edge_tools.fixtures.__main__ import main
from edge_tools.fixtures.catalog import FixtureCatalog
from edge_tools.fixtures.kernels import centre_surround_kernel

Array = npt.NDArray[np.float32]
OnnxResult = tuple[Array, Array, npt.NDArray[np.int32]]

ONE_SQUARE = (400, 100, 500, 200)
SECOND_SQUARE = (80, 260, 200, 380)
NET = 416
SSD = 300


def letterbox(image_bytes: bytes) -> tuple[Array, Array]:
    """Reference tiny-YOLOv3 preprocessing: aspect kept, centred on grey 128, RGB 0..1, NCHW."""
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    width, height = image.size
    scale = min(NET / width, NET / height)
    new_width, new_height = int(width * scale), int(height * scale)
    canvas = Image.new("RGB", (NET, NET), (128, 128, 128))
    resized = image.resize((new_width, new_height), Image.Resampling.BICUBIC)
    canvas.paste(resized, ((NET - new_width) // 2, (NET - new_height) // 2))
    pixels = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    return pixels, np.array([[height, width]], dtype=np.float32)


def onnx_session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run_onnx(session: ort.InferenceSession, image_bytes: bytes) -> OnnxResult:
    pixels, shape = letterbox(image_bytes)
    boxes, scores, indices = session.run(None, {"input_1": pixels, "image_shape": shape})
    return boxes, scores, indices


def onnx_detections(result: OnnxResult) -> list[tuple[int, float, list[float]]]:
    """(class, score, [y1, x1, y2, x2] pixels) per selected row, whatever the indices layout."""
    boxes, scores, indices = result
    return [(int(c), float(scores[b, c, k]), boxes[b, k].tolist()) for b, c, k in indices.reshape(-1, 3)]


def yolo_box(box: tuple[int, int, int, int]) -> list[float]:
    """A (left, top, right, bottom) truth box in the model's (y1, x1, y2, x2) order."""
    left, top, right, bottom = box
    return [top, left, bottom, right]


def interface(session: ort.InferenceSession) -> list[tuple[str, str, list[int | str]]]:
    return [(t.name, t.type, t.shape) for t in session.get_inputs() + session.get_outputs()]


def ssd_interpreter(model: bytes) -> Interpreter:
    interpreter = Interpreter(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def run_ssd(interpreter: Interpreter, image_bytes: bytes) -> list[tuple[int, float, list[float]]]:
    """(class, score, [ymin, xmin, ymax, xmax] normalised) per detection; image stretched to 300²."""
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    pixels = np.asarray(image.resize((SSD, SSD), Image.Resampling.BILINEAR))[None]
    details = interpreter.get_input_details()[0]
    if details["dtype"] == np.float32:
        pixels = pixels.astype(np.float32) / 127.5 - 1.0
    interpreter.set_tensor(details["index"], pixels)
    interpreter.invoke()
    boxes, classes, scores, count = (
        interpreter.get_tensor(output["index"]) for output in interpreter.get_output_details()
    )
    return [(int(classes[0, i]), float(scores[0, i]), boxes[0, i].tolist()) for i in range(int(count[0]))]


@pytest.fixture(scope="module")
def yolo_v1() -> ort.InferenceSession:
    return onnx_session(build_yolo_onnx("v1"))


@pytest.fixture(scope="module")
def ssd_v1() -> Interpreter:
    return ssd_interpreter(build_ssd_tflite("v1"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> FixtureCatalog:
    return ensure_fixtures(tmp_path_factory.mktemp("fixtures"))


# ONNX: the tiny-YOLOv3 interface


def test_onnx_model_has_the_zoo_interface_opset_and_lowest_ir() -> None:
    model = onnx.load_from_string(build_yolo_onnx())
    onnx.checker.check_model(model, full_check=True)

    assert [(o.domain, o.version) for o in model.opset_import] == [("", 11)]
    assert model.ir_version == 6
    session = onnx_session(model.SerializeToString())
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    outputs = {o.name: (o.type, o.shape) for o in session.get_outputs()}
    assert inputs == {
        "input_1": ("tensor(float)", [1, 3, 416, 416]),
        "image_shape": ("tensor(float)", [1, 2]),
    }
    assert outputs == {
        "yolonms_layer_1": ("tensor(float)", [1, 3380, 4]),
        "yolonms_layer_1:1": ("tensor(float)", [1, 80, 3380]),
        "yolonms_layer_1:2": ("tensor(int32)", [1, "M", 3]),
    }
    assert "NonMaxSuppression" in {node.op_type for node in model.graph.node}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_onnx_finds_a_white_square_where_it_was_drawn(yolo_v1: ort.InferenceSession, fmt: str) -> None:
    image = make_square_image(640, 480, [ONE_SQUARE], "JPEG" if fmt == "JPEG" else "PNG")

    result = run_onnx(yolo_v1, image)

    assert result[2].dtype == np.int32
    assert result[2].shape == (1, 1, 3)
    [(class_id, score, box)] = onnx_detections(result)
    assert class_id == 0
    assert 0.5 < score <= 1.0
    assert np.allclose(box, yolo_box(ONE_SQUARE), atol=25)


@pytest.mark.parametrize("image", ["black", "noise"])
def test_onnx_finds_nothing_in_black_or_noise(yolo_v1: ort.InferenceSession, image: str) -> None:
    data = make_square_image(640, 480, []) if image == "black" else make_noise_image(640, 480)

    _, _, indices = run_onnx(yolo_v1, data)

    assert indices.shape == (1, 0, 3)


def test_onnx_gives_one_box_per_square(yolo_v1: ort.InferenceSession) -> None:
    image = make_square_image(640, 480, [ONE_SQUARE, SECOND_SQUARE], "PNG")

    detections = onnx_detections(run_onnx(yolo_v1, image))

    assert len(detections) == 2
    for truth in (ONE_SQUARE, SECOND_SQUARE):
        assert any(np.allclose(box, yolo_box(truth), atol=25) for _, _, box in detections)


def test_onnx_m3_layout_has_indices_without_batch_axis() -> None:
    session = onnx_session(build_yolo_onnx(indices_layout="M3"))

    found = run_onnx(session, make_square_image(640, 480, [ONE_SQUARE]))
    empty = run_onnx(session, make_square_image(640, 480, []))

    assert found[2].shape == (1, 3)
    assert empty[2].shape == (0, 3)
    assert session.get_outputs()[2].shape == ["M", 3]


def test_onnx_variants_differ_in_class_and_score(yolo_v1: ort.InferenceSession) -> None:
    image = make_square_image(640, 480, [ONE_SQUARE])
    v2 = onnx_session(build_yolo_onnx("v2"))

    [(class_1, score_1, box_1)] = onnx_detections(run_onnx(yolo_v1, image))
    [(class_2, score_2, box_2)] = onnx_detections(run_onnx(v2, image))

    assert (COCO_NAMES[class_1], COCO_NAMES[class_2]) == ("person", "car")
    assert score_2 == pytest.approx(0.9 * score_1, rel=1e-3)
    assert box_1 == box_2


def test_heavy_onnx_has_same_interface_and_detections_but_tiny_yolo_compute(
    yolo_v1: ort.InferenceSession,
) -> None:
    heavy = onnx_session(build_yolo_onnx(heavy=True))
    image = make_square_image(640, 480, [ONE_SQUARE, SECOND_SQUARE])

    light_result = run_onnx(yolo_v1, image)
    heavy_result = run_onnx(heavy, image)

    assert interface(heavy) == interface(yolo_v1)
    assert np.array_equal(heavy_result[2], light_result[2])
    assert np.allclose(heavy_result[1], light_result[1], atol=1e-6)
    assert 5.0e9 < heavy_branch_flops() < 6.0e9
    assert len(build_yolo_onnx(heavy=True)) < 200_000  # weights are generated at load time


# TFLite: the SSD detection-zoo interface


def test_tflite_model_has_the_ssd_zoo_interface(ssd_v1: Interpreter) -> None:
    [image] = ssd_v1.get_input_details()
    outputs = ssd_v1.get_output_details()

    assert image["name"] == "normalized_input_image_tensor"
    assert image["dtype"] == np.uint8
    assert image["shape"].tolist() == [1, 300, 300, 3]
    assert image["quantization"] == (0.0, 0)
    assert [(o["name"], o["dtype"], o["shape"].tolist()) for o in outputs] == [
        ("TFLite_Detection_PostProcess", np.float32, [1, 10, 4]),
        ("TFLite_Detection_PostProcess:1", np.float32, [1, 10]),
        ("TFLite_Detection_PostProcess:2", np.float32, [1, 10]),
        ("TFLite_Detection_PostProcess:3", np.float32, [1]),
    ]


def test_tflite_finds_a_square_exactly_at_its_anchor(ssd_v1: Interpreter) -> None:
    image = make_square_image(300, 300, [(180, 40, 240, 100)], "PNG")

    [(class_id, score, box)] = run_ssd(ssd_v1, image)

    assert class_id == 0
    assert score == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(np.array(box) * 300, [40, 180, 100, 240], atol=0.01)


def test_tflite_finds_squares_in_a_stretched_640x480_image(ssd_v1: Interpreter) -> None:
    image = make_square_image(640, 480, [ONE_SQUARE, SECOND_SQUARE])

    detections = run_ssd(ssd_v1, image)

    assert len(detections) == 2
    for left, top, right, bottom in (ONE_SQUARE, SECOND_SQUARE):
        truth = [top / 480, left / 640, bottom / 480, right / 640]
        assert any(np.allclose(box, truth, atol=0.07) for _, _, box in detections)
    assert all(class_id == 0 and score > 0.5 for class_id, score, _ in detections)


@pytest.mark.parametrize("image", ["black", "noise"])
def test_tflite_finds_nothing_in_black_or_noise(ssd_v1: Interpreter, image: str) -> None:
    data = make_square_image(640, 480, []) if image == "black" else make_noise_image(640, 480)

    assert run_ssd(ssd_v1, data) == []


def test_tflite_variants_differ_and_float_input_matches_uint8(ssd_v1: Interpreter) -> None:
    image = make_square_image(300, 300, [(180, 40, 240, 100)], "PNG")
    v2 = ssd_interpreter(build_ssd_tflite("v2"))
    floating = ssd_interpreter(build_ssd_tflite(float_input=True))

    [(class_1, score_1, box_1)] = run_ssd(ssd_v1, image)
    [(class_2, score_2, box_2)] = run_ssd(v2, image)
    [(class_f, score_f, box_f)] = run_ssd(floating, image)

    labelmap = ssd_labelmap_text().splitlines()
    assert (labelmap[class_1 + 1], labelmap[class_2 + 1]) == ("person", "car")
    assert score_2 == pytest.approx(0.9 * score_1, rel=1e-4)
    assert box_1 == box_2
    assert floating.get_input_details()[0]["dtype"] == np.float32
    assert (class_f, box_f) == (class_1, box_1)
    assert score_f == pytest.approx(score_1, abs=1e-4)


# Reproducibility, packaging, labels


@pytest.mark.parametrize(
    "build",
    [
        lambda: build_yolo_onnx("v1"),
        lambda: build_yolo_onnx("v2", indices_layout="M3", heavy=True),
        lambda: build_ssd_tflite("v1"),
        lambda: build_ssd_tflite("v2", float_input=True),
    ],
)
def test_rebuilding_a_model_gives_identical_bytes(build: Callable[[], bytes]) -> None:
    assert build() == build()


def test_variants_differ_in_bytes() -> None:
    assert build_yolo_onnx("v1") != build_yolo_onnx("v2")
    assert build_ssd_tflite("v1") != build_ssd_tflite("v2")


@pytest.mark.parametrize("top_folder", [None, "tiny-yolo-1"])
def test_model_zip_is_reproducible_and_holds_model_and_labels(top_folder: str | None) -> None:
    model = build_yolo_onnx()
    first = make_model_zip(model, "model.onnx", "person\n", "labels.txt", top_folder=top_folder)
    second = make_model_zip(model, "model.onnx", "person\n", "labels.txt", top_folder=top_folder)

    assert first == second
    prefix = f"{top_folder}/" if top_folder else ""
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert archive.testzip() is None
        assert archive.read(prefix + "model.onnx") == model
        assert archive.read(prefix + "labels.txt") == b"person\n"
        files = [info for info in archive.infolist() if not info.is_dir()]
        assert [info.filename for info in files] == [prefix + "model.onnx", prefix + "labels.txt"]
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert len(archive.infolist()) == (3 if top_folder else 2)


def test_digests_give_sha256_and_md5_in_hex_and_base64() -> None:
    result = digests(b"abc")

    assert result.size == 3
    assert result.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert result.md5_hex == "900150983cd24fb0d6963f7d28e17f72"
    assert result.md5_base64 == base64.b64encode(bytes.fromhex(result.md5_hex)).decode()


def test_label_files_follow_coco_and_the_zoo_labelmap() -> None:
    coco = coco_labels_text().splitlines()
    labelmap = ssd_labelmap_text().splitlines()

    assert len(coco) == 80
    assert coco[:3] == ["person", "bicycle", "car"]
    assert len(labelmap) == 91
    assert labelmap[:4] == ["???", "person", "bicycle", "car"]
    assert labelmap.count("???") == 11
    assert [name for name in labelmap if name != "???"] == coco


# Catalog and CLI


def test_cli_writes_catalog_and_a_second_run_rewrites_nothing(tmp_path: Path) -> None:
    out = tmp_path / "fixtures"

    assert main(["--out", str(out), "--no-real"]) == 0
    catalog = load_catalog(out)
    mtimes = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}
    assert len(mtimes) == len(catalog.files) + 1  # plus catalog.json itself
    # The second run goes through the real entry point, as `make fixtures` does.
    rerun = subprocess.run(
        [sys.executable, "-m", "edge_tools.fixtures", "--out", str(out), "--no-real"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert rerun.returncode == 0, rerun.stderr
    assert "up to date" in rerun.stderr
    assert {path: path.stat().st_mtime_ns for path in mtimes} == mtimes
    assert load_catalog(out) == catalog


def test_concurrent_generators_leave_a_complete_catalog(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: generate_fixtures(tmp_path), range(2)))

    catalog = load_catalog(tmp_path)
    assert results[0].catalog == results[1].catalog == catalog
    for relative, sha256 in catalog.files.items():
        assert digests((tmp_path / relative).read_bytes()).sha256 == sha256
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_changed_file_is_rewritten_and_nothing_else(generated: FixtureCatalog) -> None:
    zip_path = generated.path(generated.model("tiny-yolo-1").zip_file)
    catalog_path = generated.path("catalog.json")
    catalog_mtime = catalog_path.stat().st_mtime_ns
    original = zip_path.read_bytes()
    zip_path.write_bytes(b"corrupted")

    result = generate_fixtures(catalog_path.parent)

    assert result.written == ["zips/tiny-yolo-1.zip"]
    assert zip_path.read_bytes() == original
    assert catalog_path.stat().st_mtime_ns == catalog_mtime
    assert generate_fixtures(catalog_path.parent).up_to_date


def test_an_unreadable_catalog_is_rebuilt(tmp_path: Path) -> None:
    (tmp_path / "catalog.json").write_text("{not json", encoding="utf-8")

    result = generate_fixtures(tmp_path)

    assert "catalog.json" in result.written
    assert load_catalog(tmp_path).models == result.catalog.models


def test_catalog_describes_models_and_zips_truthfully(generated: FixtureCatalog) -> None:
    ids = {model.id for model in generated.models}
    assert {"tiny-yolo-1", "tiny-yolo-2", "ssd-lite-1", "ssd-lite-2"} <= ids
    for model in generated.models:
        archive = generated.path(model.zip_file).read_bytes()
        assert digests(archive).sha256 == model.zip.sha256
        assert digests(archive).md5_base64 == model.zip.md5_base64
        assert digests(archive).md5_hex == model.zip.md5_hex
        assert model.zip.size == len(archive)
        assert model.zip_name == f"{model.id}.zip"
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            assert opened.namelist() == model.zip_members
            model_member = next(m for m in model.zip_members if m.endswith(model.model_file[-5:]))
            assert opened.read(model_member) == generated.path(model.model_file).read_bytes()
        assert digests(generated.path(model.model_file).read_bytes()).sha256 == model.model_sha256
    assert generated.model("tiny-yolo-2").class_label == "car"
    assert generated.model("tiny-yolo-1-m3").indices_layout == "M3"
    assert generated.model("ssd-lite-1").runtime == "tflite"


def test_catalog_images_have_the_recorded_squares(
    generated: FixtureCatalog, yolo_v1: ort.InferenceSession
) -> None:
    image = generated.image("one-square-jpeg")
    [truth] = image.boxes
    data = generated.path(image.file).read_bytes()

    [(_, _, box)] = onnx_detections(run_onnx(yolo_v1, data))

    assert Image.open(io.BytesIO(data)).size == (image.width, image.height)
    assert (truth.left, truth.top, truth.right, truth.bottom) == ONE_SQUARE
    assert truth.normalized.left == pytest.approx(400 / 640)
    assert truth.normalized.height == pytest.approx(100 / 480)
    assert np.allclose(box, yolo_box(ONE_SQUARE), atol=25)
    assert generated.image("noise-png").boxes == []


def test_catalog_lookups_fail_clearly(generated: FixtureCatalog, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="tiny-yolo-1"):
        generated.model("missing")
    with pytest.raises(KeyError, match="one-square-jpeg"):
        generated.image("missing")
    with pytest.raises(ValueError, match="load_catalog"):
        FixtureCatalog.model_validate(generated.model_dump()).path("x")
    with pytest.raises(FileNotFoundError):
        load_catalog(tmp_path)


# Bad arguments


def test_builders_refuse_unknown_variants_and_layouts() -> None:
    with pytest.raises(ValueError, match="v3"):
        build_yolo_onnx("v3")
    with pytest.raises(ValueError, match="v3"):
        build_ssd_tflite("v3")
    with pytest.raises(ValueError, match="indices_layout"):
        build_yolo_onnx(indices_layout="MM3")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("width", "height", "boxes"),
    [(0, 480, []), (640, 480, [(600, 100, 700, 200)]), (640, 480, [(10, 10, 10, 20)])],
)
def test_square_image_refuses_bad_sizes_and_boxes(
    width: int, height: int, boxes: list[tuple[int, int, int, int]]
) -> None:
    with pytest.raises(ValueError, match="image|box"):
        make_square_image(width, height, boxes)


def test_images_refuse_unknown_formats_and_sizes() -> None:
    with pytest.raises(ValueError, match="GIF"):
        make_square_image(10, 10, [], "GIF")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        make_noise_image(10, 0)


def test_kernel_refuses_an_anchor_larger_than_the_kernel() -> None:
    with pytest.raises(ValueError, match="kernel"):
        centre_surround_kernel(cells=13, side=24)
