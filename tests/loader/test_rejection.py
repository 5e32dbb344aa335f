"""The loader when the inference module refuses a version: the pure decision, then the service on the fake
edgeHub downloading from real Azurite."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from edge_shared.edgehub import InputMessage, Twin
from edge_shared.messages import INPUT_INFERENCE_STATUS, InferenceStatus
from edge_shared.repository import ModelRepository
from edge_tools.azurite import Azurite
from loader_module.rejection import SERVED_HISTORY, plan_rejection, protected_versions, remember_served
from loader_module.settings import LoaderSettings
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import desired_for, make_settings, model_zip
from tests.loader.service_helpers import announcements, running_loader, status_events, update, wait_state

INSTALLED = ["v3", "v2", "v1"]


def refused(version: str, serving: str | None = None, code: str = "load_failed") -> InferenceStatus:
    return InferenceStatus(
        state="rejected", version=version, code=code, message="cannot load", serving_version=serving
    )


def plan(status: InferenceStatus, **given: Any) -> tuple[str | None, str | None, bool]:
    arguments: dict[str, Any] = {
        "current": "v3",
        "desired_version": "v3",
        "desired_target": "v3-abc",
        "served": ["v1"],
        "installed": INSTALLED,
    }
    arguments.update(given)
    result = plan_rejection(status, **arguments)
    return result.restore, result.block_target, result.relevant


def test_a_refused_current_goes_back_to_what_the_inference_module_serves() -> None:
    assert plan(refused("v3", serving="v2")) == ("v2", "v3-abc", True)


def test_without_a_serving_version_it_goes_back_to_the_last_one_that_served() -> None:
    assert plan(refused("v3")) == ("v1", "v3-abc", True)
    assert plan(refused("v3"), served=["v2", "v1"]) == ("v2", "v3-abc", True)


def test_a_version_that_served_and_then_kept_failing_goes_back_to_the_one_before() -> None:
    status = refused("v3", serving="v3", code="failing_requests")
    assert plan(status, served=["v3", "v2", "v1"]) == ("v2", "v3-abc", True)  # never back to the refused one


def test_it_never_goes_back_to_a_version_no_longer_installed_nor_to_nothing_known() -> None:
    assert plan(refused("v3", serving="v0"), served=["v-1"]) == (None, "v3-abc", True)
    assert plan(refused("v3"), served=[]) == (None, "v3-abc", True)
    assert plan(refused("v3"), served=["v3"]) == (None, "v3-abc", True)


def test_a_refused_current_that_is_not_the_desired_one_is_restored_but_blocks_nothing() -> None:
    assert plan(refused("v3", serving="v2"), desired_version="v9", desired_target="v9-def") == (
        "v2",
        None,
        True,
    )


def test_a_refused_desired_version_that_is_not_current_blocks_its_target_only() -> None:
    assert plan(refused("v3", serving="v2"), current="v2") == (None, "v3-abc", True)


def test_a_stale_refusal_of_another_version_changes_nothing() -> None:
    assert plan(refused("v2", serving="v1")) == (None, None, False)


def test_the_served_history_is_newest_first_without_repeats_and_bounded() -> None:
    served: list[str] = []
    for version in ("v1", "v2", "v1", "v3", "v4", "v5", "v6"):
        served = remember_served(served, version)
    assert served == ["v6", "v5", "v4", "v3"] and len(served) == SERVED_HISTORY
    assert remember_served(["v1", "v2"], "v2") == ["v2", "v1"]


def test_retention_protects_the_last_two_versions_that_served() -> None:
    assert protected_versions(["v3", "v2", "v1"]) == frozenset({"v3", "v2"})
    assert protected_versions([]) == frozenset()


def publish(azurite: Azurite, data: bytes, version: str) -> dict[str, Any]:
    name = f"rejection/{uuid.uuid4().hex}/{version}.zip"
    azurite.upload("models", name, data)
    return desired_for(data, azurite.sas_url("models", name), f"{version}.zip")


def status_message(status: InferenceStatus) -> InputMessage:
    return InputMessage(input_name=INPUT_INFERENCE_STATUS, data=status.to_json_bytes())


def serving(version: str) -> InputMessage:
    return status_message(InferenceStatus(state="serving", version=version))


async def v1_served_then_v2_installed(hub: FakeEdgeHubClient, azurite: Azurite) -> None:
    """v1 installed and reported serving by the inference module, then v2 installed (not yet refused)."""
    await hub.push_desired(publish(azurite, model_zip("onnx", padding=1), "v1"))
    await wait_state(hub, "ready", "v1")
    await hub.deliver_input(serving("v1"))
    await hub.push_desired(publish(azurite, model_zip("onnx", padding=2), "v2"))
    await wait_state(hub, "ready", "v2")


@pytest.mark.integration
async def test_a_refused_version_is_reported_rejected_current_goes_back_and_it_is_not_retried(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    repo = ModelRepository(settings.model_root)
    hub = FakeEdgeHubClient()
    async with running_loader(settings, hub, client) as service:
        await v1_served_then_v2_installed(hub, azurite)
        assert repo.current_version() == "v2"

        message = "onnx runtime failed to load the model: /models/models/v2/model.onnx is broken"
        await hub.deliver_input(
            status_message(refused("v2", serving="v1").model_copy(update={"message": message}))
        )
        mu = update(hub)
        assert (mu["state"], mu["version"], mu["error"]["code"]) == ("rejected", "v2", "load_failed")
        assert "/models/" not in mu["error"]["message"]  # no device path in the twin
        assert repo.current_version() == "v1"
        assert hub.reported["LatestAIModelFileName"] == "v1.zip"
        assert [m["version"] for m in announcements(hub)] == ["v1", "v2", "v1"]
        assert status_events(hub)[-1]["state"] == "rejected"
        assert status_events(hub)[-1]["error"]["code"] == "load_failed"

        await service.reconcile()  # e.g. the periodic twin refresh, or the same desired state again
        await hub.push_desired({"Size": None})
        assert repo.current_version() == "v1"
        assert update(hub)["state"] == "rejected"
        assert [m["version"] for m in announcements(hub)] == ["v1", "v2", "v1"]

    async with running_loader(settings, hub, client):  # a restart remembers the refusal
        assert update(hub)["state"] == "rejected" and repo.current_version() == "v1"
        await hub.push_desired(publish(azurite, model_zip("onnx", padding=3), "v3"))
        await wait_state(hub, "ready", "v3")
    assert repo.current_version() == "v3"


@pytest.mark.integration
async def test_retention_keeps_the_version_that_served_so_a_refusal_can_go_back_to_it(
    azurite: Azurite, model_root: Any, client: httpx.AsyncClient
) -> None:
    settings = make_settings(model_root, ca_file=azurite.ca_file, keep_versions=1)
    repo = ModelRepository(model_root)
    hub = FakeEdgeHubClient()
    async with running_loader(settings, hub, client):
        await v1_served_then_v2_installed(hub, azurite)
        assert hub.reported["InstalledModels"] == ["v2", "v1"]  # one kept, plus the one that served
        await hub.deliver_input(status_message(refused("v2")))  # nothing serves: the last that served
        await wait_state(hub, "rejected", "v2")
        assert repo.current_version() == "v1"


@pytest.mark.integration
async def test_unparsable_status_and_stale_refusals_change_nothing(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    repo = ModelRepository(settings.model_root)
    hub = FakeEdgeHubClient()
    async with running_loader(settings, hub, client):
        await hub.push_desired(publish(azurite, model_zip("onnx", padding=1), "v1"))
        await wait_state(hub, "ready", "v1")
        await hub.deliver_input(InputMessage(input_name=INPUT_INFERENCE_STATUS, data=b"not json"))
        await hub.deliver_input(InputMessage(input_name="Elsewhere", data=refused("v1").to_json_bytes()))
        await hub.deliver_input(status_message(refused("v0", serving="v1")))
        assert update(hub)["state"] == "ready" and repo.current_version() == "v1"


def announced(hub: FakeEdgeHubClient, version: str) -> bool:
    return version in [message["version"] for message in announcements(hub)]


@pytest.mark.integration
async def test_ready_waits_for_the_inference_module_and_a_refused_version_is_never_ready(
    azurite: Azurite, model_root: Any, client: httpx.AsyncClient
) -> None:
    settings = make_settings(model_root, ca_file=azurite.ca_file, serve_confirm_timeout=60)
    hub = FakeEdgeHubClient()
    async with running_loader(settings, hub, client):
        await hub.push_desired(publish(azurite, model_zip("onnx", padding=1), "v1"))
        await hub.wait_until(lambda: announced(hub, "v1"))
        assert update(hub)["state"] == "installing"  # announced, not yet serving
        await hub.deliver_input(serving("v1"))
        await wait_state(hub, "ready", "v1")

        await hub.push_desired(publish(azurite, model_zip("onnx", padding=2), "v2"))
        await hub.wait_until(lambda: announced(hub, "v2"))
        await hub.deliver_input(status_message(refused("v2", serving="v1")))
        await wait_state(hub, "rejected", "v2")
    reported = [p["ModelUpdate"] for p in hub.reported_patches if "ModelUpdate" in p]
    assert [(u["state"], u["version"]) for u in reported if u["state"] in ("ready", "rejected")] == [
        ("ready", "v1"),
        ("rejected", "v2"),
    ]
    assert ModelRepository(model_root).current_version() == "v1"


@pytest.mark.integration
async def test_without_a_word_from_the_inference_module_ready_comes_after_the_bound(
    azurite: Azurite, model_root: Any, client: httpx.AsyncClient
) -> None:
    settings = make_settings(model_root, ca_file=azurite.ca_file, serve_confirm_timeout=0.2)
    hub = FakeEdgeHubClient()
    async with running_loader(settings, hub, client):
        await hub.push_desired(publish(azurite, model_zip("onnx"), "v1"))
        await wait_state(hub, "ready", "v1")
    assert ModelRepository(model_root).current_version() == "v1"


@dataclass
class QueuedRefusalHub(FakeEdgeHubClient):
    """Delivers a queued `InferenceStatus` right after connecting, before the twin is read (as edgeHub
    delivers what waited while the loader was down)."""

    queued: InputMessage | None = None
    delivered: asyncio.Task[None] | None = None

    async def get_twin(self) -> Twin:
        if self.queued is not None and self.delivered is None:
            self.delivered = asyncio.create_task(self.deliver_input(self.queued))
            await asyncio.sleep(0)  # a yield: the delivery starts, as the SDK's would, before the twin
        return await super().get_twin()


@pytest.mark.integration
async def test_a_refusal_queued_while_the_loader_was_down_is_judged_against_the_desired_state(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    hub = FakeEdgeHubClient()
    async with running_loader(settings, hub, client):
        await v1_served_then_v2_installed(hub, azurite)
    restarted = QueuedRefusalHub(
        desired=hub.desired, reported=hub.reported, queued=status_message(refused("v2", serving="v1"))
    )
    async with running_loader(settings, restarted, client):
        await wait_state(restarted, "rejected", "v2")
        assert restarted.delivered is not None
        await restarted.delivered
    assert ModelRepository(settings.model_root).current_version() == "v1"
    assert [m["version"] for m in announcements(restarted)] == ["v1"]  # v2 is not made current again
