"""A serving model that fails request after request is refused like one that failed to load: the loader is
told once per streak (`failing_requests`), and serving the previous version again ends it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from edge_shared.edgehub import InputMessage
from edge_shared.messages import INPUT_MODEL, OUTPUT_INFERENCE_STATUS, InferenceStatus, ModelAnnouncement
from edge_tools.fixtures import FixtureCatalog
from inference_module.api import create_app
from inference_module.errors import InferenceError
from inference_module.failing import FailureStreak
from inference_module.runtimes.base import RuntimeOptions
from inference_module.settings import InferenceSettings
from tests.fake_edgehub import FakeEdgeHubClient
from tests.inference.helpers import GatedDetector, GatedFactory, install_model, serve


class FailingVersionFactory(GatedFactory):
    """Gated detectors (open gates) whose `detect` raises after warm-up for the version named `failing`."""

    def __call__(self, model_path: Path, options: RuntimeOptions) -> GatedDetector:
        detector = super().__call__(model_path, options)
        if detector.name == "failing":
            detector.closed.set()  # detect() raises, as a model failing on real images would
        return detector


def refusals(hub: FakeEdgeHubClient) -> list[InferenceStatus]:
    sent = [InferenceStatus.model_validate_json(m.data) for m in hub.outputs_to(OUTPUT_INFERENCE_STATUS)]
    return [status for status in sent if status.state == "rejected"]


def routed(announcement: ModelAnnouncement) -> InputMessage:
    return InputMessage(input_name=INPUT_MODEL, data=announcement.to_json_bytes())


@pytest.mark.integration
async def test_a_model_failing_requests_in_a_row_is_reported_once_and_the_previous_serves_again(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    good = install_model(model_root, catalog, "tiny-yolo-1", version="good")
    failing = install_model(model_root, catalog, "tiny-yolo-2", version="failing", make_current=False)
    factory = FailingVersionFactory()
    settings = InferenceSettings(
        model_root=model_root, edgehub=True, host="127.0.0.1", port=0, reject_after_failures=3
    )
    image = catalog.path(catalog.image("one-square-png").file).read_bytes()
    hub = FakeEdgeHubClient()
    async with serve(create_app(settings, registry={"onnx": factory}, edgehub=hub)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            await hub.deliver_input(routed(failing))  # passes its warm-up, so it is swapped in
            assert (await client.get("/model")).json()["version"] == "failing"
            for attempt in range(5):
                response = await client.post("/score", content=image)
                assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
                assert len(refusals(hub)) == (0 if attempt < 2 else 1)  # told once, at the third
            [refusal] = refusals(hub)
            assert (refusal.version, refusal.code, refusal.serving_version) == (
                "failing",
                "failing_requests",
                "failing",
            )
            await hub.deliver_input(routed(good))  # what the loader announces after putting it back
            response = await client.post("/score", content=image)
            assert response.status_code == 200 and response.json()["model"]["version"] == "good"
            metrics = (await client.get("/metrics")).text
    assert 'status="500"' in metrics and 'model_version="failing"' in metrics


async def test_a_success_ends_the_streak_and_zero_never_tells() -> None:
    told: list[tuple[str, str]] = []

    async def tell(version: str, exc: InferenceError) -> None:
        told.append((version, exc.code))

    streak = FailureStreak(tell, limit=3)
    for _ in range(2):
        await streak.failed("v1")
    streak.succeeded("v1")
    for _ in range(2):
        await streak.failed("v1")
    assert told == []
    await streak.failed("v2")  # another version starts its own count
    await streak.failed("v1")
    assert told == []
    for _ in range(2):
        await streak.failed("v1")
    assert told == [("v1", "failing_requests")]
    for _ in range(10):
        await streak.failed("v1")
    assert told == [("v1", "failing_requests")]  # once per streak

    never = FailureStreak(tell, limit=0)
    for _ in range(10):
        await never.failed("v3")
    assert told == [("v1", "failing_requests")]
