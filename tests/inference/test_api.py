"""The HTTP API on a real uvicorn (loopback, free port) with httpx: architecture §7, end to end."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageChops

from edge_shared.scoring import AvaScoreResponse, ErrorBody, ModelInfo, ScoreResponse
from edge_tools.fixtures import FixtureCatalog, make_square_image
from inference_module.api import create_app
from inference_module.runtimes.base import RuntimeOptions
from inference_module.settings import InferenceSettings
from tests.inference.helpers import GatedDetector, GatedFactory, install_model, serve
from tests.inference.test_imaging import png_header_only

pytestmark = pytest.mark.integration
TOLERANCE = 0.05


def settings_for(root: Path, **overrides: object) -> InferenceSettings:
    return InferenceSettings(model_root=root, edgehub=False, host="127.0.0.1", port=0, **overrides)  # type: ignore[arg-type]


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = ErrorBody.model_validate_json(response.content)
    if code is not None:
        assert body.error.code == code


@pytest.mark.parametrize(("model_id", "version"), [("tiny-yolo-1", "1.1"), ("ssd-lite-1", "ssd-1")])
async def test_both_runtimes_find_the_object_in_jpeg_and_png(
    model_root: Path, catalog: FixtureCatalog, model_id: str, version: str
) -> None:
    fixture = catalog.model(model_id)
    install_model(model_root, catalog, model_id, version=version)
    async with serve(create_app(settings_for(model_root))) as url, httpx.AsyncClient(base_url=url) as client:
        for image_id, media in (("one-square-jpeg", "image/jpeg"), ("one-square-png", "image/png")):
            sample = catalog.image(image_id)
            response = await client.post(
                "/score", content=catalog.path(sample.file).read_bytes(), headers={"content-type": media}
            )
            assert response.status_code == 200, response.text
            body = ScoreResponse.model_validate_json(response.content)
            assert (body.model.version, body.model.runtime) == (version, fixture.runtime)
            assert (body.image.width, body.image.height) == (sample.width, sample.height)
            assert len(body.detections) == 1
            (found,) = body.detections
            truth = sample.boxes[0].normalized
            assert found.label == fixture.class_label
            for got, want in zip(
                (found.box.left, found.box.top, found.box.width, found.box.height),
                (truth.left, truth.top, truth.width, truth.height),
                strict=True,
            ):
                assert abs(got - want) < TOLERANCE
            assert body.inference_ms > 0


@pytest.mark.parametrize("model_id", ["tiny-yolo-1", "ssd-lite-1"])
async def test_a_camera_sized_jpeg_is_scored_against_its_own_size(
    model_root: Path, catalog: FixtureCatalog, model_id: str
) -> None:
    install_model(model_root, catalog, model_id, version="v1")
    # square, so that SSD's stretch keeps the fixture's square anchors matching the square object
    image = make_square_image(1440, 1440, [(900, 300, 1200, 600)], "JPEG")
    async with serve(create_app(settings_for(model_root))) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/score", content=image, headers={"content-type": "image/jpeg"})
    body = ScoreResponse.model_validate_json(response.content)
    assert (body.image.width, body.image.height) == (1440, 1440)
    (found,) = body.detections
    truth = (900 / 1440, 300 / 1440, 300 / 1440, 300 / 1440)
    got = (found.box.left, found.box.top, found.box.width, found.box.height)
    assert all(abs(a - b) < TOLERANCE for a, b in zip(got, truth, strict=True)), got


async def test_ava_format_and_query_parameters(model_root: Path, catalog: FixtureCatalog) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    image = catalog.path(catalog.image("two-squares-jpeg").file).read_bytes()
    async with serve(create_app(settings_for(model_root))) as url, httpx.AsyncClient(base_url=url) as client:
        ava = await client.post("/score", params={"format": "ava"}, content=image)
        assert ava.status_code == 200
        parsed = AvaScoreResponse.model_validate_json(ava.content)
        assert [item.entity.tag.value for item in parsed.inferences] == ["person", "person"]
        assert parsed.inferences[0].entity.tag.confidence >= parsed.inferences[1].entity.tag.confidence
        one = await client.post("/score", params={"max_detections": 1}, content=image)
        assert len(ScoreResponse.model_validate_json(one.content).detections) == 1
        strict = await client.post("/score", params={"threshold": 0.8}, content=image)
        assert len(ScoreResponse.model_validate_json(strict.content).detections) == 1  # 0.85 kept, 0.68 not


async def test_annotated_jpeg_decodes_and_differs_from_the_input(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    original = catalog.path(catalog.image("one-square-png").file).read_bytes()
    async with serve(create_app(settings_for(model_root))) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/score/annotated", content=original, headers={"content-type": "image/png"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    annotated = Image.open(io.BytesIO(response.content))
    assert annotated.format == "JPEG"
    source = Image.open(io.BytesIO(original)).convert("RGB")
    assert annotated.size == source.size
    difference = ImageChops.difference(annotated.convert("RGB"), source)
    assert difference.getbbox() is not None
    # the box outline is drawn around the square at x400-500, y100-200
    assert max(annotated.convert("RGB").getpixel((406, 150))) > 40  # type: ignore[arg-type]


def _truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(buffer, format="JPEG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


def _one_pixel() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_INPUTS: list[tuple[str, bytes, dict[str, str], dict[str, str], int, str]] = [
    ("empty body", b"", {}, {}, 400, "empty_body"),
    ("text", b"just some text", {"content-type": "image/jpeg"}, {}, 400, "invalid_image"),
    ("truncated jpeg", _truncated_jpeg(), {"content-type": "image/jpeg"}, {}, 400, "invalid_image"),
    ("1x1", _one_pixel(), {"content-type": "image/png"}, {}, 400, "image_too_small"),
    ("bomb header", png_header_only(20000, 20000), {"content-type": "image/png"}, {}, 413, "too_many_pixels"),
    ("wrong content type", _one_pixel(), {"content-type": "text/plain"}, {}, 415, "unsupported_media_type"),
    ("json content type", b"{}", {"content-type": "application/json"}, {}, 415, "unsupported_media_type"),
    ("threshold not a number", _one_pixel(), {}, {"threshold": "high"}, 422, "invalid_request"),
    ("threshold above 1", _one_pixel(), {}, {"threshold": "1.5"}, 422, "invalid_request"),
    ("max_detections 0", _one_pixel(), {}, {"max_detections": "0"}, 422, "invalid_request"),
    ("unknown format", _one_pixel(), {}, {"format": "xml"}, 422, "invalid_request"),
]


async def test_bad_inputs_get_4xx_with_the_error_body_never_500(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    settings = settings_for(model_root, max_image_bytes=8 * 1024 * 1024)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        for name, body, headers, params, status, code in BAD_INPUTS:
            for route in ("/score", "/score/annotated"):
                if route == "/score/annotated" and params.get("format"):
                    continue  # no `format` on the annotated route; unknown parameters are ignored
                response = await client.post(route, content=body, headers=headers, params=params)
                assert response.status_code == status, f"{name} on {route}: {response.text}"
                assert_error(response, status, code)
        huge = await client.post("/score", content=b"\xff" * (50 * 1024 * 1024))
        assert_error(huge, 413, "payload_too_large")

        async def chunks() -> object:
            for _ in range(10):
                yield b"\xff" * (1024 * 1024)

        streamed = await client.post("/score", content=chunks())  # type: ignore[arg-type]
        assert_error(streamed, 413, "payload_too_large")
        # and the server still serves afterwards
        ok = await client.post("/score", content=catalog.path(catalog.image("black-png").file).read_bytes())
        assert ok.status_code == 200
        assert ScoreResponse.model_validate_json(ok.content).detections == []


async def test_without_a_model_ready_and_score_answer_503_with_retry_after(model_root: Path) -> None:
    async with serve(create_app(settings_for(model_root, retry_after_seconds=7))) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            live = await client.get("/health/live")
            assert live.status_code == 200
            for path in ("/health/ready", "/v2/health/ready", "/model"):
                response = await client.get(path)
                assert_error(response, 503, "no_model")
                assert response.headers["retry-after"] == "7"
            score = await client.post("/score", content=_one_pixel())
            assert_error(score, 503, "no_model")
            assert score.headers["retry-after"] == "7"
            reload = await client.post("/model/reload")
            assert_error(reload, 409, "no_current_model")


async def test_restart_with_current_set_is_ready_without_edgehub(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "ssd-lite-1", version="ssd-1")
    for _ in range(2):  # a start, then a restart on the same repository
        app = create_app(settings_for(model_root))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
            for path in ("/health/ready", "/v2/health/ready", "/health/live", "/v2/health/live"):
                assert (await client.get(path)).status_code == 200
            info = ModelInfo.model_validate_json((await client.get("/model")).content)
            assert (info.version, info.runtime, info.input_shape, info.labels_count) == (
                "ssd-1",
                "tflite",
                [1, 300, 300, 3],
                91,
            )


async def test_reload_switches_to_current_and_a_failed_reload_keeps_serving(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    async with serve(create_app(settings_for(model_root))) as url, httpx.AsyncClient(base_url=url) as client:
        install_model(model_root, catalog, "tiny-yolo-2", version="v2")
        reloaded = await client.post("/model/reload")
        assert reloaded.status_code == 200
        assert ModelInfo.model_validate_json(reloaded.content).version == "v2"

        install_model(model_root, catalog, "tiny-yolo-1", version="broken", model_bytes=b"corrupt" * 100)
        failed = await client.post("/model/reload")
        assert_error(failed, 409, "load_failed")
        info = ModelInfo.model_validate_json((await client.get("/model")).content)
        assert info.version == "v2"
        metrics = (await client.get("/metrics")).text
        assert 'inference_model_swaps_total{source="reload"} 1.0' in metrics
        assert 'inference_model_swap_failures_total{code="load_failed",source="reload"} 1.0' in metrics


async def test_requests_past_the_queue_bound_get_503_at_once(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    factory = GatedFactory(open_gates=False)
    settings = settings_for(model_root, pipeline_threads=1, max_queue=0, retry_after_seconds=3)
    image = catalog.path(catalog.image("one-square-png").file).read_bytes()
    async with serve(create_app(settings, registry={"onnx": factory})) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            (detector,) = factory.detectors  # its warm-up passed through; its gate is still closed
            running = asyncio.create_task(client.post("/score", content=image))
            assert await asyncio.to_thread(detector.entered.wait, 10)
            refused = await client.post("/score", content=image)
            assert_error(refused, 503, "overloaded")
            assert refused.headers["retry-after"] == "3"
            detector.gate.set()
            assert (await running).status_code == 200
            assert (await client.post("/score", content=image)).status_code == 200


async def test_metrics_page_docs_and_upload_page(model_root: Path, catalog: FixtureCatalog) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    async with serve(create_app(settings_for(model_root))) as url, httpx.AsyncClient(base_url=url) as client:
        await client.post("/score", content=catalog.path(catalog.image("one-square-jpeg").file).read_bytes())
        await client.post("/score", content=b"")
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        for version, status in (("v1", "200"), ("none", "400")):
            sample = (
                f'inference_requests_total{{model_version="{version}",route="/score",status="{status}"}} 1.0'
            )
            assert sample in metrics.text
        assert 'inference_active_model_info{runtime="onnx",version="v1"} 1.0' in metrics.text
        assert "inference_request_seconds_bucket" in metrics.text
        page = await client.get("/")
        assert page.status_code == 200 and "<form" in page.text and "score?threshold" in page.text
        assert (await client.get("/docs")).status_code == 200
        schema = (await client.get("/openapi.json")).json()
        assert {"/score", "/score/annotated", "/model", "/model/reload", "/metrics"} <= set(schema["paths"])
        assert_error(await client.get("/no/such/path"), 404, "not_found")
        assert_error(await client.delete("/score"), 405, "method_not_allowed")


async def test_a_runtime_bug_is_a_500_with_the_error_body_and_the_server_keeps_going(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    class Exploding(GatedFactory):
        def __call__(self, model_path: Path, options: RuntimeOptions) -> GatedDetector:
            detector = super().__call__(model_path, options)
            detector.closed.set()  # so that detect() raises, as a runtime bug would
            return detector

    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    image = catalog.path(catalog.image("one-square-png").file).read_bytes()
    async with serve(create_app(settings_for(model_root), registry={"onnx": Exploding()})) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(2):
                detector_bug = await client.post("/score", content=image)
                assert_error(detector_bug, 500, "internal_error")
            assert (await client.get("/health/live")).status_code == 200
