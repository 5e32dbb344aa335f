"""Start-up fallback and the `InferenceStatus` messages that tell the loader what serves and what was
refused (real server, in-process fake edgeHub)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from edge_shared.edgehub import InputMessage
from edge_shared.messages import INPUT_MODEL, OUTPUT_INFERENCE_STATUS, InferenceStatus
from edge_shared.reported import ActiveModel
from edge_shared.repository import MANIFEST_FILE, ModelRepository
from edge_tools.fixtures import FixtureCatalog
from inference_module.api import create_app
from inference_module.settings import InferenceSettings
from tests.fake_edgehub import FakeEdgeHubClient
from tests.inference.helpers import install_model, serve

pytestmark = pytest.mark.integration

#: An ONNX file whose first byte passes the loader's magic check but which no runtime can load.
CORRUPT_ONNX = b"\x08garbage" * 64


def settings_for(root: Path, *, edgehub: bool = True) -> InferenceSettings:
    return InferenceSettings(model_root=root, edgehub=edgehub, host="127.0.0.1", port=0)


def statuses(hub: FakeEdgeHubClient) -> list[InferenceStatus]:
    return [InferenceStatus.model_validate_json(m.data) for m in hub.outputs_to(OUTPUT_INFERENCE_STATUS)]


async def served(client: httpx.AsyncClient) -> str:
    response = await client.get("/model")
    assert response.status_code == 200, response.text
    version: str = response.json()["version"]
    return version


async def test_start_falls_back_to_the_newest_installed_version_that_loads_and_says_so(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    install_model(model_root, catalog, "ssd-lite-1", version="v2")
    install_model(model_root, catalog, "tiny-yolo-2", version="v3", model_bytes=CORRUPT_ONNX)
    install_model(model_root, catalog, "tiny-yolo-2", version="v4", model_bytes=CORRUPT_ONNX)  # current
    hub = FakeEdgeHubClient()
    async with serve(create_app(settings_for(model_root), edgehub=hub)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/health/ready")).status_code == 200
            assert await served(client) == "v2"  # v3 fails too; v2 is the newest that loads
    active = ActiveModel.model_validate(hub.reported["ActiveModel"])
    assert (active.version, active.fallback_from, active.fallback_reason) == ("v2", "v4", "load_failed")
    assert hub.reported["ActiveModel"]["fallbackFrom"] == "v4"
    sent = statuses(hub)
    assert [(s.state, s.version, s.code, s.serving_version) for s in sent] == [
        ("rejected", "v4", "load_failed", "v2"),
        ("rejected", "v3", "load_failed", "v2"),
        ("serving", "v2", None, None),
    ]


async def test_a_refused_announcement_is_sent_to_the_loader_with_what_still_serves(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    corrupt = install_model(
        model_root, catalog, "tiny-yolo-2", version="v2", make_current=False, model_bytes=CORRUPT_ONNX
    )
    hub = FakeEdgeHubClient()
    async with serve(create_app(settings_for(model_root), edgehub=hub)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            await hub.deliver_input(
                InputMessage(
                    input_name=INPUT_MODEL, data=corrupt.to_json_bytes(), content_type="application/json"
                )
            )
            await hub.wait_until(lambda: any(s.state == "rejected" for s in statuses(hub)))
            assert await served(client) == "v1"
    assert [(s.state, s.version, s.code, s.serving_version) for s in statuses(hub)] == [
        ("serving", "v1", None, None),
        ("rejected", "v2", "load_failed", "v1"),
    ]
    assert hub.reported["ActiveModel"].get("fallbackFrom") is None


async def test_when_no_installed_version_loads_the_module_is_not_ready_and_tells_each_refusal(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1", model_bytes=CORRUPT_ONNX)
    install_model(model_root, catalog, "tiny-yolo-2", version="v2", model_bytes=CORRUPT_ONNX)
    hub = FakeEdgeHubClient()
    async with serve(create_app(settings_for(model_root), edgehub=hub)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/health/ready")).status_code == 503
    assert [(s.state, s.version, s.serving_version) for s in statuses(hub)] == [
        ("rejected", "v2", None),
        ("rejected", "v1", None),
    ]
    assert "ActiveModel" not in hub.reported


async def test_standalone_start_falls_back_too(model_root: Path, catalog: FixtureCatalog) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    install_model(model_root, catalog, "tiny-yolo-2", version="v2", model_bytes=CORRUPT_ONNX)
    async with serve(create_app(settings_for(model_root, edgehub=False))) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert await served(client) == "v1"


async def test_the_fallback_reads_no_fifo_and_skips_versions_it_cannot_read(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    install_model(model_root, catalog, "tiny-yolo-2", version="v2")
    install_model(model_root, catalog, "tiny-yolo-2", version="v3", model_bytes=CORRUPT_ONNX)
    manifest = ModelRepository(model_root).version_dir("v2") / MANIFEST_FILE
    manifest.unlink()
    os.mkfifo(manifest)  # opened by name, it would block the start for ever
    async with asyncio.timeout(60), serve(create_app(settings_for(model_root, edgehub=False))) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert await served(client) == "v1"
