"""Direct methods with the real SDK: control API, HTTPS service API, and module-to-module on :443."""

import asyncio
import threading
import time
from typing import Any

import pytest
from azure.iot.device import MethodRequest, MethodResponse
from azure.iot.device.aio import IoTHubModuleClient
from azure.iot.device.exceptions import ClientError

from edgehub_sim.errors import MethodError
from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import Inbox, ModuleClients, service_client

pytestmark = pytest.mark.integration


def echo_handler(client: IoTHubModuleClient, seen: Inbox[MethodRequest], status: int = 200) -> Any:
    async def handler(request: MethodRequest) -> None:
        seen.put(request)
        response = {"echo": request.payload, "name": request.name}
        await client.send_method_response(
            MethodResponse.create_from_method_request(request, status, response)
        )

    return handler


async def test_method_round_trip(simulator: EdgeHubSimulator, clients: ModuleClients) -> None:
    receiver = clients.edge("receiver")
    seen: Inbox[MethodRequest] = Inbox()
    receiver.on_method_request_received = echo_handler(receiver, seen, status=201)
    result = await asyncio.to_thread(simulator.invoke_method, "receiver", "reload model", {"v": 2}, 10)
    assert result.status == 201
    assert result.payload == {"echo": {"v": 2}, "name": "reload model"}
    assert (await seen.get()).payload == {"v": 2}


async def test_method_without_payload_gives_none(simulator: EdgeHubSimulator, clients: ModuleClients) -> None:
    receiver = clients.edge("receiver")
    seen: Inbox[MethodRequest] = Inbox()
    receiver.on_method_request_received = echo_handler(receiver, seen)
    result = await asyncio.to_thread(simulator.invoke_method, "receiver", "ping", None, 10)
    assert result.payload == {"echo": None, "name": "ping"}


async def test_method_to_disconnected_or_deaf_module_is_404(
    simulator: EdgeHubSimulator, clients: ModuleClients
) -> None:
    with pytest.raises(MethodError) as offline:
        await asyncio.to_thread(simulator.invoke_method, "receiver", "ping", None, 5)
    assert offline.value.status == 404
    receiver = clients.edge("receiver")
    await receiver.connect()
    with pytest.raises(MethodError) as deaf:
        await asyncio.to_thread(simulator.invoke_method, "receiver", "ping", None, 5)
    assert deaf.value.status == 404


async def test_unanswered_method_is_504(simulator: EdgeHubSimulator, clients: ModuleClients) -> None:
    receiver = clients.edge("receiver")
    seen: Inbox[MethodRequest] = Inbox()
    receiver.on_method_request_received = seen.put  # never answers
    with pytest.raises(MethodError) as timeout:
        await asyncio.to_thread(simulator.invoke_method, "receiver", "slow", None, 0.5)
    assert timeout.value.status == 504
    assert (await seen.get()).name == "slow"


async def test_two_modules_never_see_each_others_methods(
    simulator: EdgeHubSimulator, clients: ModuleClients
) -> None:
    sender, receiver = clients.edge("sender"), clients.edge("receiver")
    sender_seen: Inbox[MethodRequest] = Inbox()
    receiver_seen: Inbox[MethodRequest] = Inbox()
    sender.on_method_request_received = echo_handler(sender, sender_seen)
    receiver.on_method_request_received = echo_handler(receiver, receiver_seen)
    await asyncio.to_thread(simulator.invoke_method, "sender", "for-sender", None, 10)
    await asyncio.to_thread(simulator.invoke_method, "receiver", "for-receiver", None, 10)
    assert (await sender_seen.get()).name == "for-sender"
    assert (await receiver_seen.get()).name == "for-receiver"
    assert sender_seen.empty() and receiver_seen.empty()


async def test_service_api_invokes_methods_with_iot_hub_statuses(
    simulator: EdgeHubSimulator, clients: ModuleClients
) -> None:
    path = f"/twins/{simulator.device_id}/modules/receiver/methods?api-version=2021-04-12"
    async with service_client(simulator) as http:
        offline = await http.post(path, json={"methodName": "ping", "responseTimeoutInSeconds": 5})
        assert offline.status_code == 404
        receiver = clients.edge("receiver")
        seen: Inbox[MethodRequest] = Inbox()
        receiver.on_method_request_received = echo_handler(receiver, seen)
        body = {"methodName": "ping", "payload": [1, 2], "responseTimeoutInSeconds": 5}
        answered = await http.post(path, json=body)
        assert answered.status_code == 200
        assert answered.json() == {"status": 200, "payload": {"echo": [1, 2], "name": "ping"}}
        bad = await http.post(path, json={"payload": 1})
        assert bad.status_code == 400


async def test_module_invokes_another_module_over_port_443(clients: ModuleClients) -> None:
    sender, receiver = clients.edge("sender"), clients.edge("receiver")
    seen: Inbox[MethodRequest] = Inbox()
    receiver.on_method_request_received = echo_handler(receiver, seen)
    await sender.connect()
    result: Any = await sender.invoke_method(
        {"methodName": "swap", "payload": {"to": "v2"}, "responseTimeoutInSeconds": 5},
        clients.simulator.device_id,
        module_id="receiver",
    )
    assert result == {"status": 200, "payload": {"echo": {"to": "v2"}, "name": "swap"}}


async def test_connection_string_client_cannot_invoke_methods(clients: ModuleClients) -> None:
    sender = clients.from_connection_string("sender")
    await sender.connect()
    with pytest.raises(ClientError) as raised:
        await sender.invoke_method({"methodName": "x"}, clients.simulator.device_id, module_id="receiver")
    assert "edge environment" in str(raised.value.__cause__)


def test_control_invoke_is_thread_safe(simulator: EdgeHubSimulator) -> None:
    errors: list[BaseException] = []

    def call() -> None:
        try:
            simulator.invoke_method("receiver", "ping", None, 1)
        except MethodError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [getattr(e, "status", None) for e in errors] == [404] * 4


async def test_connect_timeout_waits_for_the_module_to_start_listening(
    simulator: EdgeHubSimulator, clients: ModuleClients
) -> None:
    path = f"/twins/{simulator.device_id}/modules/receiver/methods"
    body = {"methodName": "ping", "responseTimeoutInSeconds": 5, "connectTimeoutInSeconds": 20}
    async with service_client(simulator) as http:
        call = asyncio.create_task(http.post(path, json=body))
        await asyncio.to_thread(
            simulator.wait_for, lambda: simulator.control.methods_awaiting("receiver") == 1
        )
        receiver = clients.edge("receiver")
        seen: Inbox[MethodRequest] = Inbox()
        receiver.on_method_request_received = echo_handler(receiver, seen)
        response = await asyncio.wait_for(call, 30)
    assert response.status_code == 200
    assert response.json()["payload"] == {"echo": None, "name": "ping"}
    assert simulator.control.methods_awaiting("receiver") == 0


def test_connect_timeout_expires_with_404(simulator: EdgeHubSimulator) -> None:
    started = time.monotonic()
    with pytest.raises(MethodError) as offline:
        simulator.invoke_method("receiver", "ping", None, timeout=5, connect_timeout=0.3)
    assert offline.value.status == 404
    assert time.monotonic() - started >= 0.3
