"""A fleet: one simulator hosting many Edge devices, each with the manifest's modules, keys, twins,
routes and env files; device twins with tags over the service API."""

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from azure.iot.device.aio import IoTHubModuleClient
from azure.iot.device.exceptions import CredentialError

from edgehub_sim.server import EdgeHubSimulator, numbered_devices
from tests.edgehub_sim.conftest import Inbox, random_loopback, sdk_message, service_client, start_simulator
from tests.edgehub_sim.test_cli import serve_to_end, serving, wait_ready

pytestmark = pytest.mark.integration

DEVICES = ["dev-001", "dev-002", "dev-003"]
MODULES = ["sender", "receiver", "m1", "m2", "m3", "m4", "m5"]


@pytest.fixture
def fleet(manifest_path: Path, tmp_path: Path) -> Iterator[EdgeHubSimulator]:
    simulator = start_simulator(manifest_path, tmp_path / "state", devices=DEVICES)
    yield simulator
    simulator.stop()


class FleetClients:
    """Real SDK module clients of any device of a fleet (edge environment), all shut down at the end."""

    def __init__(self, simulator: EdgeHubSimulator) -> None:
        self.simulator = simulator
        self._clients: list[IoTHubModuleClient] = []

    def edge(self, module: str, device: str) -> IoTHubModuleClient:
        with mock.patch.dict(os.environ, self.simulator.env_for(module, device)):
            client = IoTHubModuleClient.create_from_edge_environment()
        self._clients.append(client)
        return client

    async def shutdown_all(self) -> None:
        for client in self._clients:
            await asyncio.wait_for(client.shutdown(), 30)


@pytest.fixture
async def fleet_clients(fleet: EdgeHubSimulator) -> AsyncIterator[FleetClients]:
    factory = FleetClients(fleet)
    yield factory
    await factory.shutdown_all()


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_numbered_devices_are_zero_padded() -> None:
    assert numbered_devices(3) == ["dev-001", "dev-002", "dev-003"]
    assert numbered_devices(1000)[-1] == "dev-1000"
    with pytest.raises(ValueError, match="at least 1"):
        numbered_devices(0)


def test_fleet_writes_its_device_list_and_env_files_per_device(fleet: EdgeHubSimulator) -> None:
    state = fleet.state_dir
    assert (state / "devices.txt").read_text() == "dev-001\ndev-002\ndev-003\n"
    assert not (state / "env").exists()  # the single-device layout is not written for a fleet
    for device in DEVICES:
        folder = state / "devices" / device / "env"
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{m}.env" for m in MODULES)
        env = read_env(folder / "receiver.env")
        assert (env["IOTEDGE_DEVICEID"], env["IOTEDGE_MODULEID"]) == (device, "receiver")
        assert Path(env["IOTEDGE_WORKLOADURI"].removeprefix("unix://")).is_socket()
    keys = {fleet.module_key("sender", device) for device in DEVICES}
    assert len(keys) == len(DEVICES)  # every device has its own module identities


async def test_each_device_routes_and_twins_within_itself(
    fleet: EdgeHubSimulator, fleet_clients: FleetClients
) -> None:
    inboxes: dict[str, Inbox[Any]] = {}
    for device in ("dev-001", "dev-002"):
        receiver = fleet_clients.edge("receiver", device)
        inboxes[device] = Inbox()
        receiver.on_message_received = inboxes[device].handler
        await asyncio.wait_for(receiver.connect(), 30)
    sender = fleet_clients.edge("sender", "dev-002")
    await asyncio.wait_for(sender.connect(), 30)
    await asyncio.wait_for(sender.send_message_to_output(sdk_message(b"from two"), "DLModelOutput"), 30)
    message = await inboxes["dev-002"].get()
    assert message.data == b"from two" and message.custom_properties["$.cdid"] == "dev-002"
    assert inboxes["dev-001"].empty() and fleet.control.queued("receiver", "dev-001") == 0
    assert [m.body for m in fleet.upstream_messages()] == [b"from two"]
    await asyncio.wait_for(sender.patch_twin_reported_properties({"state": "two"}), 30)
    assert fleet.reported("sender", "dev-002") == {"state": "two"}
    assert fleet.reported("sender", "dev-001") == {}
    fleet.set_desired("sender", {"level": 7}, "dev-003")
    twin = await asyncio.wait_for(sender.get_twin(), 30)
    assert twin["desired"]["level"] == 1  # dev-003's change is not dev-002's


async def test_a_key_of_another_device_is_refused(fleet: EdgeHubSimulator) -> None:
    wrong = fleet.connection_string_for("sender", "dev-001").replace(
        fleet.module_key("sender", "dev-001"), fleet.module_key("sender", "dev-002")
    )
    client = IoTHubModuleClient.create_from_connection_string(wrong, server_verification_cert=fleet.ca_pem)
    try:
        with pytest.raises(CredentialError):
            await asyncio.wait_for(client.connect(), 30)
    finally:
        await asyncio.wait_for(client.shutdown(), 30)


async def test_device_twin_tags_with_etags(fleet: EdgeHubSimulator) -> None:
    async with service_client(fleet) as http:
        first = (await http.get("/twins/dev-002")).json()
        assert (first["deviceId"], first["tags"], first["capabilities"]) == ("dev-002", {}, {"iotEdge": True})
        patched = await http.patch(
            "/twins/dev-002",
            json={"tags": {"ring": "canary", "site": {"floor": 3}}, "properties": {"desired": {"x": 1}}},
            headers={"If-Match": f'"{first["etag"]}"'},
        )
        assert patched.status_code == 200
        twin = patched.json()
        assert twin["tags"] == {"ring": "canary", "site": {"floor": 3}} and twin["etag"] != first["etag"]
        assert twin["properties"]["desired"] == {"x": 1, "$version": 2}
        stale = await http.patch(
            "/twins/dev-002", json={"tags": {"ring": "early"}}, headers={"If-Match": first["etag"]}
        )
        assert stale.status_code == 412 and stale.headers["iothub-errorcode"] == "PreconditionFailed"
        assert stale.json()["Message"].startswith("ErrorCode:PreconditionFailed;")
        assert "Tracking ID:" in stale.json()["ExceptionMessage"]
        merged = await http.patch("/twins/dev-002", json={"tags": {"site": None}}, headers={"If-Match": "*"})
        assert merged.json()["tags"] == {"ring": "canary"}
        assert (await http.get("/twins/dev-001")).json()["tags"] == {}
        missing = await http.get("/twins/dev-404")
        assert missing.status_code == 404 and missing.headers["iothub-errorcode"] == "DeviceNotFound"
        assert (await http.patch("/twins/dev-404", json={"tags": {"a": 1}})).status_code == 404
        assert (await http.get("/twins/dev-404/modules/sender")).status_code == 404
        assert (await http.patch("/twins/dev-002", json={"tags": [1]})).status_code == 400
    assert fleet.control.device_twin("dev-002")["tags"] == {"ring": "canary"}


def test_cli_serves_a_fleet(manifest_path: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with serving(
        manifest_path, state, random_loopback(), "--devices", "2", "--deployment-interval", "1"
    ) as process:
        wait_ready(process, state / "ready")
        assert (state / "devices.txt").read_text() == "dev-001\ndev-002\n"
        assert (state / "devices" / "dev-002" / "env" / "m5.env").is_file()
        process.terminate()
        assert process.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["--device-list", "{list}"], "listed twice"),
        (["--devices", "0"], "at least 1"),
        (["--devices", "2", "--workload-port", "40000"], "workload-port"),
        (["--deployment-interval", "0"], "interval"),
        (["--configuration-writes-per-minute", "0"], "at least 1"),
    ],
)
def test_cli_refuses_a_bad_fleet(
    manifest_path: Path, tmp_path: Path, arguments: list[str], reason: str
) -> None:
    device_list = tmp_path / "devices.txt"
    device_list.write_text("# ships\nship-a\nship-b\nship-a\n")
    command = [arg.replace("{list}", str(device_list)) for arg in arguments]
    result = serve_to_end(manifest_path, tmp_path / "s", *command)
    assert result.returncode == 1 and reason in result.stderr.decode()
