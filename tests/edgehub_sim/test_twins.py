"""Module twins with the real SDK: GET, reported PATCH, desired PATCH pushes, the service API."""

import asyncio
import json
from typing import Any

import pytest

from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import Inbox, ModuleClients, service_client
from tests.edgehub_sim.rawmqtt import RawClient, module_token

pytestmark = pytest.mark.integration


async def test_get_twin_returns_both_sections_with_versions(clients: ModuleClients) -> None:
    client = clients.edge("sender")
    await client.connect()
    twin = await client.get_twin()
    assert twin == {
        "desired": {"modelUrl": "https://example.invalid/m.zip", "level": 1, "$version": 1},
        "reported": {"$version": 1},
    }


async def test_startup_get_delivers_whole_desired_section_once(
    simulator: EdgeHubSimulator, clients: ModuleClients
) -> None:
    client = clients.edge("sender")
    patches: Inbox[dict[str, Any]] = Inbox()
    client.on_twin_desired_properties_patch_received = patches.handler  # connects, then GETs the twin
    first = await patches.get()
    assert first == {"modelUrl": "https://example.invalid/m.zip", "level": 1, "$version": 1}
    simulator.set_desired("sender", {"level": 2})
    assert await patches.get() == {"level": 2, "$version": 2}


async def test_reported_patch_merges_deletes_and_bumps_version(
    simulator: EdgeHubSimulator, clients: ModuleClients
) -> None:
    client = clients.edge("sender")
    await client.connect()
    await client.patch_twin_reported_properties({"state": {"a": 1, "b": 2}, "keep": True})
    await client.patch_twin_reported_properties({"state": {"b": None, "c": 3}})
    twin = await client.get_twin()
    assert twin["reported"] == {"state": {"a": 1, "c": 3}, "keep": True, "$version": 3}
    assert simulator.reported("sender") == {"state": {"a": 1, "c": 3}, "keep": True}


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]"])
def test_malformed_reported_patch_gets_400(simulator: EdgeHubSimulator, payload: bytes) -> None:
    raw = RawClient(simulator, "sender", module_token(simulator, "sender"))
    try:
        assert raw.connect() == 0
        raw.client.subscribe("$iothub/twin/res/#", qos=1)
        raw.client.publish("$iothub/twin/PATCH/properties/reported/?$rid=7", payload, qos=1)
        [reply] = raw.wait_messages(1)
        assert reply.topic == "$iothub/twin/res/400/?$rid=7"
    finally:
        raw.close()
    assert simulator.reported("sender") == {}


async def test_desired_patch_reaches_only_its_owner(
    simulator: EdgeHubSimulator, clients: ModuleClients
) -> None:
    sender, receiver = clients.edge("sender"), clients.edge("receiver")
    await sender.connect()
    await receiver.connect()
    sender_patches: Inbox[dict[str, Any]] = Inbox()
    receiver_patches: Inbox[dict[str, Any]] = Inbox()
    sender.on_twin_desired_properties_patch_received = sender_patches.handler
    receiver.on_twin_desired_properties_patch_received = receiver_patches.handler
    assert simulator.set_desired("sender", {"level": 5, "modelUrl": None}) == 2
    assert await sender_patches.get() == {"level": 5, "modelUrl": None, "$version": 2}
    simulator.set_desired("receiver", {"mine": True})
    assert await receiver_patches.get() == {"mine": True, "$version": 2}
    assert (await sender.get_twin())["desired"] == {"level": 5, "$version": 2}


async def test_concurrent_twin_gets_never_cross(clients: ModuleClients) -> None:
    sender, receiver = clients.edge("sender"), clients.edge("receiver")
    await sender.connect()
    await receiver.connect()
    results = await asyncio.gather(*(c.get_twin() for c in [sender, receiver] * 10))
    for index, twin in enumerate(results):
        assert ("level" in twin["desired"]) == (index % 2 == 0)


async def test_service_api_shows_reported_and_pushes_desired(
    simulator: EdgeHubSimulator, clients: ModuleClients
) -> None:
    client = clients.edge("sender")
    await client.connect()
    patches: Inbox[dict[str, Any]] = Inbox()
    client.on_twin_desired_properties_patch_received = patches.handler
    await client.patch_twin_reported_properties({"status": "ready"})
    path = f"/twins/{simulator.device_id}/modules/sender?api-version=2021-04-12"
    async with service_client(simulator) as http:
        got = await http.get(path)
        assert got.status_code == 200
        assert got.json()["properties"]["reported"] == {"status": "ready", "$version": 2}
        assert got.json()["connectionState"] == "Connected"
        patched = await http.patch(path, json={"properties": {"desired": {"level": 9}}})
        assert patched.status_code == 200
        assert patched.json()["properties"]["desired"]["$version"] == 2
    assert await patches.get() == {"level": 9, "$version": 2}


def test_twin_survives_a_restart(simulator: EdgeHubSimulator) -> None:
    simulator.set_desired("sender", {"level": 3})
    raw = RawClient(simulator, "sender", module_token(simulator, "sender"))
    try:
        assert raw.connect() == 0
        raw.client.publish("$iothub/twin/PATCH/properties/reported/?$rid=1", json.dumps({"ok": 1}), qos=1)
        simulator.wait_for(lambda: simulator.reported("sender") == {"ok": 1})
    finally:
        raw.close()
    simulator.stop()
    simulator.start()
    twin = simulator.twin("sender")["properties"]
    assert twin["desired"] == {"modelUrl": "https://example.invalid/m.zip", "level": 3, "$version": 2}
    assert twin["reported"] == {"ok": 1, "$version": 2}
