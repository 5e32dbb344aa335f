"""Routed `DLModelInput` messages through the edgeHub seam (in-process fake), with a real server."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from pathlib import Path

import httpx
import pytest

from edge_shared.edgehub import Handlers, InputMessage
from edge_shared.messages import INPUT_MODEL, ModelAnnouncement
from edge_shared.reported import ActiveModel
from edge_shared.scoring import ScoreResponse
from edge_tools.fixtures import FixtureCatalog
from inference_module.api import create_app
from inference_module.settings import InferenceSettings
from tests.fake_edgehub import FakeEdgeHubClient
from tests.inference.helpers import install_model, serve

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

CLIENTS = 8
SWAPS = 20
MAX_REQUESTS_PER_CLIENT = 5000


def routed(announcement: ModelAnnouncement) -> InputMessage:
    return InputMessage(
        input_name=INPUT_MODEL, data=announcement.to_json_bytes(), content_type="application/json"
    )


def settings_for(root: Path) -> InferenceSettings:
    return InferenceSettings(model_root=root, edgehub=True, host="127.0.0.1", port=0)


def metric(text: str, line_prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_swap_under_load_drops_no_request(model_root: Path, catalog: FixtureCatalog) -> None:
    v1 = install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    v2 = install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    image = catalog.path(catalog.image("one-square-jpeg").file).read_bytes()
    hub = FakeEdgeHubClient()
    statuses: dict[int, int] = {}
    versions: dict[str, int] = {}
    latencies: list[float] = []
    swapping = True
    answered = asyncio.Event()

    async def client_loop(client: httpx.AsyncClient) -> None:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if not swapping:
                return
            started = time.perf_counter()
            response = await client.post("/score", content=image, headers={"content-type": "image/jpeg"})
            latencies.append(time.perf_counter() - started)
            answered.set()
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                version = ScoreResponse.model_validate_json(response.content).model.version
                versions[version] = versions.get(version, 0) + 1

    async with serve(create_app(settings_for(model_root), edgehub=hub)) as url:
        limits = httpx.Limits(max_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client, asyncio.timeout(120):
            workers = [asyncio.create_task(client_loop(client)) for _ in range(CLIENTS)]
            try:
                for swap in range(SWAPS):
                    target = v2 if swap % 2 == 0 else v1
                    await hub.deliver_input(routed(target))
                    assert hub.reported["ActiveModel"]["version"] == target.version
                    # let every client get answers from the new model before the next swap
                    wanted = len(latencies) + CLIENTS
                    while len(latencies) < wanted:
                        answered.clear()
                        await answered.wait()
            finally:
                swapping = False
                await asyncio.gather(*workers)
            metrics = (await client.get("/metrics")).text

    assert set(statuses) == {200}, statuses
    assert set(versions) == {"v1", "v2"}, versions
    assert metric(metrics, 'inference_model_swaps_total{source="message"}') == SWAPS
    p50, p99 = statistics.median(latencies), statistics.quantiles(latencies, n=100)[98]
    logger.info(
        "swap under load: %d requests, %s, p50 %.1f ms, p99 %.1f ms, max %.1f ms",
        len(latencies),
        versions,
        p50 * 1000,
        p99 * 1000,
        max(latencies) * 1000,
    )
    assert len(latencies) >= SWAPS * CLIENTS  # requests really ran between and during the swaps


async def test_corrupt_or_escaping_messages_leave_the_old_model_serving(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    v1 = install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    corrupt = install_model(
        model_root, catalog, "tiny-yolo-2", version="v2", make_current=False, model_bytes=b"\x08garbage" * 64
    )
    escaping = v1.model_copy(update={"version": "evil", "local_model_path": "../../etc/passwd"})
    hub = FakeEdgeHubClient()
    image = catalog.path(catalog.image("one-square-png").file).read_bytes()
    async with serve(create_app(settings_for(model_root), edgehub=hub)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            reported = ActiveModel.model_validate(hub.reported["ActiveModel"])
            assert (reported.version, reported.runtime, reported.sha256) == ("v1", "onnx", v1.sha256)

            await hub.deliver_input(routed(corrupt))
            await hub.deliver_input(
                InputMessage(input_name=INPUT_MODEL, data=escaping.model_dump_json().encode())
            )
            await hub.deliver_input(InputMessage(input_name=INPUT_MODEL, data=b"not json"))
            await hub.deliver_input(InputMessage(input_name="SomethingElse", data=routed(corrupt).data))

            response = await client.post("/score", content=image)
            assert response.status_code == 200
            assert ScoreResponse.model_validate_json(response.content).model.version == "v1"
            assert hub.reported["ActiveModel"]["version"] == "v1"
            metrics = (await client.get("/metrics")).text
    for code in ("load_failed", "unsafe_path", "invalid_message"):
        assert metric(metrics, f'inference_model_swap_failures_total{{code="{code}",source="message"}}') == 1
    assert not (model_root / "etc").exists()


async def test_a_message_arriving_before_any_model_makes_the_module_ready(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    announcement = install_model(model_root, catalog, "ssd-lite-1", version="ssd-1", make_current=False)
    hub = FakeEdgeHubClient()
    async with serve(create_app(settings_for(model_root), edgehub=hub)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/health/ready")).status_code == 503
            assert "ActiveModel" not in hub.reported
            await hub.deliver_input(routed(announcement))
            assert (await client.get("/health/ready")).status_code == 200
            assert hub.reported["ActiveModel"]["fileName"] == "ssd-1.zip"
    assert hub.shutdown_called


async def test_edgehub_that_cannot_connect_does_not_stop_serving(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    class RefusingHub(FakeEdgeHubClient):
        async def connect(self, handlers: Handlers) -> None:  # noqa: ARG002
            raise ConnectionError("edgeHub is not there")

    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    hub = RefusingHub()
    async with serve(create_app(settings_for(model_root), edgehub=hub)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/health/ready")).status_code == 200
    assert hub.shutdown_called
