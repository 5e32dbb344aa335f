"""Concurrency: several real SDK clients sending at once lose and reorder nothing."""

import asyncio
import json
from collections import defaultdict

import pytest
from azure.iot.device.aio import IoTHubModuleClient

from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import ModuleClients, sdk_message

pytestmark = pytest.mark.integration

CLIENTS = 5
MESSAGES = 500


async def send_all(client: IoTHubModuleClient, module: str) -> None:
    await client.connect()
    for index in range(MESSAGES):
        body = json.dumps({"module": module, "n": index}).encode()
        await client.send_message_to_output(sdk_message(body, message_id=f"{module}-{index}"), "Telemetry")


async def test_five_clients_times_500_messages_arrive_complete_and_in_order(
    simulator: EdgeHubSimulator, clients: ModuleClients
) -> None:
    modules = [f"m{i}" for i in range(1, CLIENTS + 1)]
    await asyncio.gather(*(send_all(clients.edge(m), m) for m in modules))
    total = CLIENTS * MESSAGES
    await asyncio.to_thread(simulator.wait_for, lambda: len(simulator.upstream_messages()) >= total, 30)
    per_module: dict[str, list[int]] = defaultdict(list)
    for record in simulator.upstream_messages():
        per_module[record.source_module].append(json.loads(record.body)["n"])
    assert dict(per_module) == {m: list(range(MESSAGES)) for m in modules}
