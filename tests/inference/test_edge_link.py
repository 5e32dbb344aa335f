"""EdgeLink on the in-process fake: reconnects in the background, survives failed reports."""

from __future__ import annotations

from pathlib import Path

from edge_shared.edgehub import Handlers
from edge_tools.fixtures import FixtureCatalog
from inference_module.edge import EdgeLink
from inference_module.metrics import Metrics
from inference_module.service import ModelService
from inference_module.settings import InferenceSettings
from inference_module.slot import ModelSlot
from tests.fake_edgehub import FakeEdgeHubClient
from tests.inference.helpers import GatedFactory, install_model


class FlakyHub(FakeEdgeHubClient):
    """Refuses the first `failures` connection attempts."""

    failures: int = 2
    attempts: int = 0

    async def connect(self, handlers: Handlers) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("edgeHub is restarting")
        await super().connect(handlers)


def make_link(root: Path, hub: FakeEdgeHubClient) -> tuple[EdgeLink, ModelService, ModelSlot]:
    settings = InferenceSettings(model_root=root, edgehub=True)
    slot = ModelSlot()
    service = ModelService(settings, slot, Metrics(), {"onnx": GatedFactory()}, memory_probe=lambda: None)
    return EdgeLink(hub, service, slot, retry_initial=0.0), service, slot


async def test_a_refused_connection_is_retried_and_then_reports_the_model(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    hub = FlakyHub()
    link, service, _ = make_link(model_root, hub)
    await service.load_current("startup")
    await link.start()
    assert not link.connected
    await hub.wait_until(lambda: "ActiveModel" in hub.reported, within=10)
    assert (link.connected, hub.attempts) == (True, 3)
    assert hub.reported["ActiveModel"]["version"] == "v1"
    await link.stop()
    assert hub.shutdown_called


async def test_a_failed_report_does_not_undo_the_swap(model_root: Path, catalog: FixtureCatalog) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    announcement = install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    hub = FakeEdgeHubClient()
    link, service, slot = make_link(model_root, hub)
    await link.start()
    hub.fail_patch = True
    await service.load_announcement(announcement.to_json_bytes())
    assert slot.current is not None and slot.current.identity.version == "v2"
    assert "ActiveModel" not in hub.reported
    hub.fail_patch = False
    await service.load_current("reload")  # the next swap reports again
    assert hub.reported["ActiveModel"]["version"] == "v1"
    await link.stop()
