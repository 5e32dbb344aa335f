"""Route priorities and de-duplication with the real SDK, through the offline queue."""

import json
from pathlib import Path

import pytest
from azure.iot.device import Message

from tests.edgehub_sim.conftest import Inbox, ModuleClients, manifest_document, sdk_message, start_simulator

pytestmark = pytest.mark.integration

INTO_RECEIVER = 'INTO BrokeredEndpoint("/modules/receiver/inputs/In")'


async def test_higher_priority_route_drains_first_and_overlaps_deliver_once(tmp_path: Path) -> None:
    routes = {
        "slow": {"route": f"FROM /messages/modules/sender/outputs/Bulk {INTO_RECEIVER}", "priority": 5},
        "fast": {"route": f"FROM /messages/modules/sender/outputs/Urgent {INTO_RECEIVER}", "priority": 0},
        "fastAgain": {
            "route": (
                "FROM /messages/modules/sender/outputs/Urgent "
                f"WHERE $connectionModuleId = 'sender' {INTO_RECEIVER}"
            ),
            "priority": 0,
        },
    }
    manifest = tmp_path / "deployment.json"
    manifest.write_text(json.dumps(manifest_document(routes)))
    simulator = start_simulator(manifest, tmp_path / "state")
    clients = ModuleClients(simulator)
    try:
        sender = clients.edge("sender")
        for index, output in enumerate(["Bulk", "Urgent", "Bulk", "Urgent"]):
            await sender.send_message_to_output(sdk_message(output.encode(), message_id=f"{index}"), output)
        receiver = clients.edge("receiver")
        inbox: Inbox[Message] = Inbox()
        receiver.on_message_received = inbox.handler
        got = [await inbox.get() for _ in range(4)]
        assert [m.message_id for m in got] == ["1", "3", "0", "2"]
        assert len(simulator.routed_messages()) == 4  # overlapping routes: one copy per sink
    finally:
        await clients.shutdown_all()
        simulator.stop()


async def test_reported_patches_raise_twin_change_notifications_for_matching_routes(tmp_path: Path) -> None:
    routes = {
        "twins": "FROM /twinChangeNotifications INTO $upstream",
        "messages": "FROM /messages/* INTO $upstream",
    }
    manifest = tmp_path / "deployment.json"
    manifest.write_text(json.dumps(manifest_document(routes)))
    simulator = start_simulator(manifest, tmp_path / "state")
    clients = ModuleClients(simulator)
    try:
        sender = clients.edge("sender")
        await sender.connect()
        await sender.patch_twin_reported_properties({"status": "ok"})
        [notification] = simulator.upstream_messages()
        assert notification.route == "twins"
        assert json.loads(notification.body) == {
            "version": 2,
            "properties": {"reported": {"status": "ok", "$version": 2}},
        }
        assert notification.app_properties["opType"] == "updateTwin"
    finally:
        await clients.shutdown_all()
        simulator.stop()
