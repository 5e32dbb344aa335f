"""`AzureEdgeHubClient` over the real SDK and the simulator: handlers run on the module's own loop."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from edge_shared.azure_edgehub import AzureEdgeHubClient
from edge_shared.edgehub import Handlers, InputMessage, MethodRequest, MethodResponse, OutputMessage
from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import manifest_document, start_simulator

pytestmark = pytest.mark.integration


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[EdgeHubSimulator]:
    manifest = tmp_path / "deployment.json"
    manifest.write_text(json.dumps(manifest_document()))
    simulator = start_simulator(manifest, tmp_path / "state")
    yield simulator
    simulator.stop()


class Recorder:
    """Handlers that record what arrives and on which loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.patches: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inputs: asyncio.Queue[InputMessage] = asyncio.Queue()
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def on_patch(self, patch: dict[str, Any]) -> None:
        self.loops.append(asyncio.get_running_loop())
        await self.patches.put(patch)

    async def on_input(self, message: InputMessage) -> None:
        self.loops.append(asyncio.get_running_loop())
        await self.inputs.put(message)

    async def on_method(self, request: MethodRequest) -> MethodResponse:
        self.loops.append(asyncio.get_running_loop())
        if request.name == "fail":
            return MethodResponse(status=500, payload={"error": "asked to fail"})
        return MethodResponse(status=200, payload={"echo": request.payload})

    def handlers(self) -> Handlers:
        return Handlers(on_desired_patch=self.on_patch, on_input=self.on_input, on_method=self.on_method)


async def connect(simulator: EdgeHubSimulator, module: str, handlers: Handlers) -> AzureEdgeHubClient:
    client = AzureEdgeHubClient()
    with mock.patch.dict(os.environ, simulator.env_for(module)):
        await asyncio.wait_for(client.connect(handlers), 30)
    return client


@pytest.fixture
async def clients(simulator: EdgeHubSimulator) -> AsyncIterator[list[AzureEdgeHubClient]]:  # noqa: ARG001
    """Clients to shut down; depends on `simulator` so they stop before it does."""
    created: list[AzureEdgeHubClient] = []
    yield created
    for client in created:
        await asyncio.wait_for(client.shutdown(), 30)


async def test_twin_read_and_reported_patch(
    simulator: EdgeHubSimulator, clients: list[AzureEdgeHubClient]
) -> None:
    recorder = Recorder()
    sender = await connect(simulator, "sender", recorder.handlers())
    clients.append(sender)
    twin = await asyncio.wait_for(sender.get_twin(), 10)
    assert twin.desired["modelUrl"] == "https://example.invalid/m.zip"
    assert twin.desired_version is not None
    await asyncio.wait_for(sender.patch_reported({"ModelUpdate": {"state": "idle"}, "x": 1}), 10)
    await asyncio.wait_for(sender.patch_reported({"x": None}), 10)
    reported = simulator.control.reported("sender")
    assert reported["ModelUpdate"] == {"state": "idle"} and "x" not in reported


async def test_desired_patch_reaches_handler_on_module_loop(
    simulator: EdgeHubSimulator, clients: list[AzureEdgeHubClient]
) -> None:
    recorder = Recorder()
    clients.append(await connect(simulator, "sender", recorder.handlers()))
    version = await asyncio.to_thread(simulator.control.set_desired, "sender", {"level": 2})
    deadline = asyncio.get_running_loop().time() + 15
    while True:  # the SDK may first deliver the whole desired section (start-up reconcile)
        patch = await asyncio.wait_for(
            recorder.patches.get(), max(0.1, deadline - asyncio.get_running_loop().time())
        )
        if patch.get("$version") == version:
            break
    assert patch["level"] == 2
    assert all(loop is recorder.loop for loop in recorder.loops)


async def test_output_routed_to_input_with_properties(
    simulator: EdgeHubSimulator, clients: list[AzureEdgeHubClient]
) -> None:
    receiver_recorder = Recorder()
    clients.append(await connect(simulator, "receiver", receiver_recorder.handlers()))
    sender = await connect(simulator, "sender", Recorder().handlers())
    clients.append(sender)
    body = json.dumps({"version": "1.1"}).encode()
    await asyncio.wait_for(
        sender.send_output(
            "DLModelOutput",
            OutputMessage(
                data=body, message_id="m-1", correlation_id="c-1", custom_properties={"k": "a/b&c=d"}
            ),
        ),
        10,
    )
    message = await asyncio.wait_for(receiver_recorder.inputs.get(), 15)
    assert message.input_name == "DLModelInput"
    assert message.data == body
    assert message.content_type == "application/json" and message.content_encoding == "utf-8"
    assert message.message_id == "m-1" and message.correlation_id == "c-1"
    assert message.custom_properties["k"] == "a/b&c=d"
    assert all(loop is receiver_recorder.loop for loop in receiver_recorder.loops)


async def test_method_response_status_and_payload(
    simulator: EdgeHubSimulator, clients: list[AzureEdgeHubClient]
) -> None:
    recorder = Recorder()
    clients.append(await connect(simulator, "sender", recorder.handlers()))
    ok = await asyncio.to_thread(simulator.control.invoke_method, "sender", "getStatus", {"a": 1}, 10)
    failed = await asyncio.to_thread(simulator.control.invoke_method, "sender", "fail", None, 10)
    assert (ok.status, ok.payload) == (200, {"echo": {"a": 1}})
    assert failed.status == 500 and failed.payload == {"error": "asked to fail"}


async def test_calls_before_connect_and_double_shutdown(simulator: EdgeHubSimulator) -> None:
    client = AzureEdgeHubClient()
    with pytest.raises(RuntimeError, match="not connected"):
        await client.get_twin()
    client = await connect(simulator, "sender", Handlers())
    await asyncio.wait_for(client.shutdown(), 30)
    await asyncio.wait_for(client.shutdown(), 30)
    with pytest.raises(RuntimeError, match="not connected"):
        await client.patch_reported({"a": 1})
