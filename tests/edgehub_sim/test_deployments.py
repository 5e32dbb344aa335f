"""Automatic deployments over the service API against a fleet: configurations, the apply cycle, the
layered merge reaching a real SDK module client, metrics, and twin queries with continuation."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import Inbox, service_client, start_simulator
from tests.edgehub_sim.test_fleet import FleetClients

pytestmark = pytest.mark.integration

DEVICES = ["dev-001", "dev-002", "dev-003"]
API = {"api-version": "2021-04-12"}


@pytest.fixture
def fleet(manifest_path: Path, tmp_path: Path) -> Iterator[EdgeHubSimulator]:
    simulator = start_simulator(manifest_path, tmp_path / "state", devices=DEVICES, deployment_interval=1.0)
    yield simulator
    simulator.stop()


def layer(target: str, priority: int, **properties: Any) -> dict[str, Any]:
    return {
        "content": {
            "modulesContent": {
                "$edgeAgent": {},
                "sender": {f"properties.desired.{key}": value for key, value in properties.items()},
            }
        },
        "targetCondition": target,
        "priority": priority,
        "labels": {"purpose": "test"},
        "metrics": {
            "queries": {
                "onTwo": "SELECT deviceId FROM devices.modules WHERE moduleId='sender' "
                "AND properties.reported.model.version='2'"
            }
        },
    }


async def tag(http: httpx.AsyncClient, device: str, **tags: Any) -> None:
    response = await http.patch(f"/twins/{device}", params=API, json={"tags": tags})
    assert response.status_code == 200, response.text


async def put(
    http: httpx.AsyncClient, config_id: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await http.put(f"/configurations/{config_id}", params=API, json=body, headers=headers)


def desired_model(fleet: EdgeHubSimulator, device: str) -> Any:
    return fleet.control.desired("sender", device).get("model")


async def test_layers_merge_by_priority_and_removing_the_top_layer_restores_the_lower(
    fleet: EdgeHubSimulator,
) -> None:
    factory = FleetClients(fleet)
    try:
        client = factory.edge("sender", "dev-001")
        patches: Inbox[dict[str, Any]] = Inbox()
        client.on_twin_desired_properties_patch_received = patches.handler
        await asyncio.wait_for(client.connect(), 30)
        await patches.get()  # the whole desired section the SDK fetches on connect
        async with service_client(fleet) as http:
            for device in DEVICES:
                await tag(http, device, environment="prod", ring="canary" if device != "dev-003" else "early")
            v1 = {"version": "1", "FileName": "a.zip"}
            v2 = {"version": "2", "FileName": "b.zip"}
            assert (
                await put(http, "base-v1", layer("tags.environment='prod'", 10, model=v1))
            ).status_code == 201
            assert (
                await put(http, "canary-v2", layer("tags.ring='canary'", 20, model=v2, extra=1))
            ).status_code == 201
            fleet.wait_for(
                lambda: desired_model(fleet, "dev-001") == v2 and desired_model(fleet, "dev-003") == v1
            )
            assert fleet.control.desired("sender", "dev-002") == {
                "modelUrl": "https://example.invalid/m.zip",
                "level": 1,
                "model": v2,
                "extra": 1,
            }
            seen: dict[str, Any] = {}
            for _ in range(5):  # one patch per cycle that changed the twin: two layers, at most a few
                seen.update(await patches.get())
                if seen.get("model") == v2:
                    break
            assert seen["model"] == v2 and seen["extra"] == 1
            reported: dict[str, Any] = {"model": dict(v2)}
            await asyncio.wait_for(client.patch_twin_reported_properties(reported), 30)

            # Metrics are recomputed by the next cycle: targeted/applied per layer, the custom count.
            def metrics_current() -> bool:
                top = fleet.control.configuration("canary-v2")
                return bool(top["metrics"]["results"].get("onTwo") == 1)

            fleet.wait_for(metrics_current, timeout=10)
            top = (await http.get("/configurations/canary-v2", params=API)).json()
            assert top["systemMetrics"]["results"] == {"targetedCount": 2, "appliedCount": 2}
            base = (await http.get("/configurations/base-v1", params=API)).json()
            assert base["systemMetrics"]["results"] == {"targetedCount": 3, "appliedCount": 3}

            assert (
                await http.delete("/configurations/canary-v2", params=API, headers={"If-Match": "*"})
            ).status_code == 204
            restored = await patches.get()
            assert restored == {
                "model": {"version": "1", "FileName": "a.zip"},
                "extra": None,
                "$version": restored["$version"],
            }
            assert (
                fleet.twin("sender", "dev-001")["properties"]["desired"]["$version"] == restored["$version"]
            )
            assert desired_model(fleet, "dev-002") == v1
    finally:
        await factory.shutdown_all()


async def test_the_cycle_follows_tag_changes_and_retargeting(fleet: EdgeHubSimulator) -> None:
    async with service_client(fleet) as http:
        created = await put(http, "ring", layer("tags.ring='canary'", 5, model={"version": "2"}))
        assert created.status_code == 201
        etag = created.json()["etag"]
        fleet.wait_for(
            lambda: fleet.control.configuration("ring")["systemMetrics"]["results"]["targetedCount"] == 0
        )
        await tag(http, "dev-003", ring="canary")  # no trigger: the periodic cycle (1 s) picks it up
        fleet.wait_for(lambda: desired_model(fleet, "dev-003") == {"version": "2"}, timeout=10)
        assert desired_model(fleet, "dev-001") is None
        retarget = layer("deviceId='dev-001'", 5, model={"version": "2"})
        assert (await put(http, "ring", retarget, **{"If-Match": f'"{etag}"'})).status_code == 200
        fleet.wait_for(
            lambda: (
                desired_model(fleet, "dev-001") == {"version": "2"}
                and desired_model(fleet, "dev-003") is None
            )
        )
        stale = await put(http, "ring", retarget, **{"If-Match": etag})
        assert stale.status_code == 412 and stale.headers["iothub-errorcode"] == "PreconditionFailed"


async def test_configuration_errors_use_iot_hubs_error_shape(fleet: EdgeHubSimulator) -> None:
    async with service_client(fleet) as http:
        assert (await put(http, "one", layer("tags.a='b'", 1, x=1))).status_code == 201
        duplicate = await put(http, "one", layer("tags.a='b'", 1, x=1))
        assert duplicate.status_code == 409
        assert duplicate.json()["Message"].startswith("ErrorCode:ConfigurationAlreadyExists;")
        bad = await put(http, "two", layer("tags.a IN ['b']", 1, x=1))
        assert (
            bad.status_code == 400
            and bad.headers["iothub-errorcode"] == "InvalidConfigurationTargetCondition"
        )
        changed = await put(http, "one", layer("tags.a='b'", 1, x=2), **{"If-Match": "*"})
        assert changed.status_code == 400 and "cannot change" in changed.json()["Message"]
        missing = await http.get("/configurations/nope", params=API)
        assert missing.status_code == 404 and missing.headers["iothub-errorcode"] == "ConfigurationNotFound"
        assert (await http.get("/configurations", params={**API, "top": "x"})).status_code == 400
        listed = (await http.get("/configurations", params={**API, "top": "10"})).json()
        assert [c["id"] for c in listed] == ["one"] and "_generation" not in listed[0]


async def test_twin_queries_page_with_continuation(fleet: EdgeHubSimulator) -> None:
    async with service_client(fleet) as http:
        await tag(http, "dev-002", ring="early")
        query = {"query": "SELECT * FROM devices"}
        first = await http.post(
            "/devices/query", params=API, json=query, headers={"x-ms-max-item-count": "2"}
        )
        assert [t["deviceId"] for t in first.json()] == ["dev-001", "dev-002"]
        assert first.headers["x-ms-item-type"] == "twin"
        token = first.headers["x-ms-continuation"]
        second = await http.post(
            "/devices/query",
            params=API,
            json=query,
            headers={"x-ms-max-item-count": "2", "x-ms-continuation": token},
        )
        assert [t["deviceId"] for t in second.json()] == [
            "dev-003"
        ] and "x-ms-continuation" not in second.headers
        modules = await http.post(
            "/devices/query",
            params=API,
            json={"query": "SELECT deviceId, moduleId FROM devices.modules WHERE moduleId = 'receiver'"},
        )
        assert modules.json() == [{"deviceId": d, "moduleId": "receiver"} for d in DEVICES]
        assert modules.headers["x-ms-item-type"] == "raw"
        tagged = await http.post(
            "/devices/query",
            params=API,
            json={"query": "SELECT deviceId FROM devices WHERE tags.ring='early'"},
        )
        assert tagged.json() == [{"deviceId": "dev-002"}]
        for bad_headers in ({"x-ms-continuation": "garbage"}, {"x-ms-max-item-count": "0"}):
            assert (
                await http.post("/devices/query", params=API, json=query, headers=bad_headers)
            ).status_code == 400
        refused = await http.post("/devices/query", params=API, json={"query": "SELECT COUNT() FROM devices"})
        assert refused.status_code == 400 and refused.json()["Message"].startswith("ErrorCode:BadRequest;")
        assert (await http.post("/devices/query", params=API, json={"sql": "x"})).status_code == 400


async def test_configuration_writes_past_the_limit_are_throttled(manifest_path: Path, tmp_path: Path) -> None:
    simulator = start_simulator(
        manifest_path, tmp_path / "throttled", devices=DEVICES, configuration_writes_per_minute=2
    )
    try:
        async with service_client(simulator) as http:
            assert (await put(http, "first", layer("tags.a='b'", 1, x=1))).status_code == 201
            assert (await http.delete("/configurations/first", params=API)).status_code == 204
            throttled = await put(http, "second", layer("tags.a='b'", 1, x=1))
            assert (
                throttled.status_code == 429
                and throttled.headers["iothub-errorcode"] == "ThrottlingException"
            )
            assert 1 <= int(throttled.headers["Retry-After"]) <= 60
            assert (await http.get("/configurations/second", params=API)).status_code == 404  # not written
            assert (
                await http.post("/devices/query", params=API, json={"query": "SELECT * FROM devices"})
            ).status_code == 200
    finally:
        simulator.stop()
