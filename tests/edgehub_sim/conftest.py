"""Fixtures for simulator tests: a real simulator per test on its own loopback address, real SDK clients.

Every simulator binds a random 127.x.y.z (the SDK dials 8883 and 443, fixed), so xdist workers and other
engineers' runs on the same machine never collide; an address already taken is simply skipped.
"""

import asyncio
import errno
import json
import os
import secrets
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar
from unittest import mock

import httpx
import pytest
from azure.iot.device import Message
from azure.iot.device.aio import IoTHubModuleClient

from edgehub_sim.server import EdgeHubSimulator

T = TypeVar("T")

SENDER_TO_RECEIVER = (
    "FROM /messages/modules/sender/outputs/DLModelOutput "
    'INTO BrokeredEndpoint("/modules/receiver/inputs/DLModelInput")'
)


def manifest_document(routes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A manifest with modules sender, receiver, m1..m5; sender→receiver and everything upstream."""
    modules = ["sender", "receiver", "m1", "m2", "m3", "m4", "m5"]
    return {
        "modulesContent": {
            "$edgeAgent": {
                "properties.desired": {"schemaVersion": "1.1", "modules": {m: {} for m in modules}}
            },
            "$edgeHub": {
                "properties.desired": {
                    "schemaVersion": "1.1",
                    "routes": routes
                    if routes is not None
                    else {
                        "toReceiver": {"route": SENDER_TO_RECEIVER, "priority": 0, "timeToLiveSecs": 3600},
                        "everythingUpstream": "FROM /messages/* INTO $upstream",
                    },
                    "storeAndForwardConfiguration": {"timeToLiveSecs": 7200},
                }
            },
            "sender": {"properties.desired": {"modelUrl": "https://example.invalid/m.zip", "level": 1}},
            "receiver": {"properties.desired": {}},
        }
    }


def random_loopback() -> str:
    """A random loopback address other than 127.0.0.1."""
    return f"127.{secrets.randbelow(254) + 1}.{secrets.randbelow(256)}.{secrets.randbelow(253) + 2}"


def start_simulator(
    manifest_path: Path, state_dir: Path, bind: str | None = None, **kwargs: Any
) -> EdgeHubSimulator:
    """Start a simulator, trying fresh addresses while the chosen one is taken (bounded)."""
    last: OSError | None = None
    for _ in range(5):
        simulator = EdgeHubSimulator(manifest_path, state_dir, bind=bind or random_loopback(), **kwargs)
        try:
            simulator.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or bind is not None:
                raise
            last = exc
            continue
        return simulator
    assert last is not None
    raise last


@pytest.fixture
def manifest_path(tmp_path: Path) -> Path:
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(manifest_document()))
    return path


@pytest.fixture
def simulator(manifest_path: Path, tmp_path: Path) -> Iterator[EdgeHubSimulator]:
    simulator = start_simulator(manifest_path, tmp_path / "state")
    yield simulator
    simulator.stop()


class Inbox(Generic[T]):
    """Collects items handed over from SDK handler threads onto the test's event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[T] = asyncio.Queue()

    def put(self, item: T) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def handler(self, item: T) -> None:
        """Use this as the SDK handler when order matters: the SDK runs coroutine handlers one at a
        time on its handler loop, but plain functions on a 4-thread pool, in no fixed order."""
        self.put(item)

    async def get(self, timeout_secs: float = 10.0) -> T:
        return await asyncio.wait_for(self._queue.get(), timeout_secs)

    def empty(self) -> bool:
        return self._queue.empty()


class ModuleClients:
    """Builds real SDK module clients for a simulator and shuts them all down afterwards."""

    def __init__(self, simulator: EdgeHubSimulator) -> None:
        self.simulator = simulator
        self._clients: list[IoTHubModuleClient] = []

    def edge(self, module: str, **kwargs: Any) -> IoTHubModuleClient:
        """`create_from_edge_environment()` with the module's env (unix-socket workload API)."""
        with mock.patch.dict(os.environ, self.simulator.env_for(module)):
            client = IoTHubModuleClient.create_from_edge_environment(**kwargs)
        self._clients.append(client)
        return client

    def from_connection_string(self, module: str, **kwargs: Any) -> IoTHubModuleClient:
        """`create_from_connection_string()` trusting the simulator's CA."""
        kwargs.setdefault("server_verification_cert", self.simulator.ca_pem)
        client = IoTHubModuleClient.create_from_connection_string(
            self.simulator.connection_string_for(module), **kwargs
        )
        self._clients.append(client)
        return client

    async def shutdown_all(self) -> None:
        for client in self._clients:
            await asyncio.wait_for(client.shutdown(), 30)
        self._clients.clear()


@pytest.fixture
async def clients(simulator: EdgeHubSimulator) -> AsyncIterator[ModuleClients]:
    factory = ModuleClients(simulator)
    yield factory
    await factory.shutdown_all()


def service_client(simulator: EdgeHubSimulator, token: str | None = None) -> httpx.AsyncClient:
    """An HTTPS client for the service API, trusting the simulator's CA, with a service token."""
    context = ssl.create_default_context(cadata=simulator.ca_pem)
    return httpx.AsyncClient(
        base_url=f"https://{simulator.service_host}",
        verify=context,
        headers={"Authorization": token or simulator.service_token()},
        timeout=30,
    )


def sdk_message(body: bytes, **kwargs: Any) -> Message:
    """An SDK `Message` (its constructor is untyped)."""
    return Message(body, **kwargs)  # type: ignore[no-untyped-call]


def workload_socket(simulator: EdgeHubSimulator, module: str) -> Path:
    """The unix socket of `module`'s workload API (from its env file)."""
    return Path(simulator.env_for(module)["IOTEDGE_WORKLOADURI"].removeprefix("unix://"))


def workload_client(simulator: EdgeHubSimulator, module: str = "sender") -> httpx.Client:
    """An HTTP client over `module`'s workload socket."""
    transport = httpx.HTTPTransport(uds=str(workload_socket(simulator, module)))
    return httpx.Client(transport=transport, base_url="http://workload")


async def edge_client_twin(simulator: EdgeHubSimulator, module: str = "sender") -> dict[str, Any]:
    """The twin a real SDK client made by `create_from_edge_environment()` reads (so its workload API
    signed a token that the simulator accepted)."""
    factory = ModuleClients(simulator)
    try:
        client = factory.edge(module)
        await client.connect()
        twin: dict[str, Any] = await client.get_twin()
        return twin
    finally:
        await factory.shutdown_all()
