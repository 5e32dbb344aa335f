"""Connecting the real SDK: edge environment, fallbacks, and every way authentication fails."""

import gc
import os
from pathlib import Path
from unittest import mock

import pytest
import trustme
from azure.iot.device.aio import IoTHubModuleClient
from azure.iot.device.exceptions import ClientError, CredentialError

from edge_shared.edge_env import EDGE_VARIABLES, missing_edge_environment
from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import ModuleClients, edge_client_twin, start_simulator
from tests.edgehub_sim.rawmqtt import RawClient, module_token

pytestmark = pytest.mark.integration


async def test_edge_environment_client_connects_and_reads_twin(clients: ModuleClients) -> None:
    client = clients.edge("sender")
    await client.connect()
    twin = await client.get_twin()
    assert twin["desired"]["level"] == 1


def test_env_file_holds_every_iotedge_variable(simulator: EdgeHubSimulator) -> None:
    lines = (simulator.state_dir / "env" / "sender.env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines)
    assert env == simulator.env_for("sender")
    # Exactly what the modules check before creating the SDK client (and what the SDK reads).
    assert {k for k in env if k.startswith("IOTEDGE_")} == set(EDGE_VARIABLES)
    assert missing_edge_environment(env) is None
    assert Path(env["EdgeModuleCACertificateFile"]).read_text() == simulator.ca_pem
    assert (simulator.state_dir / "ready").exists()
    assert "SharedAccessKeyName=iothubowner" in (simulator.state_dir / "service.connstr").read_text()


async def test_edgehub_connection_string_fallback_connects(simulator: EdgeHubSimulator) -> None:
    env = {
        "EdgeHubConnectionString": simulator.connection_string_for("sender"),
        "EdgeModuleCACertificateFile": str(simulator.ca_path),
    }
    with mock.patch.dict(os.environ, env, clear=True):
        client = IoTHubModuleClient.create_from_edge_environment()
    try:
        await client.connect()
        assert (await client.get_twin())["desired"]["$version"] == 1
    finally:
        await client.shutdown()


async def test_connection_string_client_connects(clients: ModuleClients) -> None:
    client = clients.from_connection_string("receiver")
    await client.connect()
    assert (await client.get_twin())["reported"] == {"$version": 1}


def test_missing_environment_raises_oserror() -> None:
    with mock.patch.dict(os.environ, {}, clear=True), pytest.raises(OSError):
        IoTHubModuleClient.create_from_edge_environment()


# The SDK leaves its requests-unixsocket session open when the workload socket cannot be reached; the
# collector may close it during this test or a later one (seen in full runs): the SDK's leak, not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unreachable_workload_api_raises_oserror(simulator: EdgeHubSimulator, tmp_path: Path) -> None:
    env = simulator.env_for("sender") | {"IOTEDGE_WORKLOADURI": f"unix://{tmp_path}/nothing.sock"}
    with mock.patch.dict(os.environ, env), pytest.raises(OSError):
        IoTHubModuleClient.create_from_edge_environment()


# The SDK leaves its requests-unixsocket session open when signing fails.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_sign_refused_for_unknown_module_raises_valueerror(simulator: EdgeHubSimulator) -> None:
    env = simulator.env_for("sender") | {"IOTEDGE_MODULEID": "ghost"}
    with mock.patch.dict(os.environ, env), pytest.raises(ValueError):
        IoTHubModuleClient.create_from_edge_environment()


async def test_wrong_key_is_refused_with_credential_error(simulator: EdgeHubSimulator) -> None:
    other_key = simulator.module_key("receiver")
    connstr = simulator.connection_string_for("sender").replace(simulator.module_key("sender"), other_key)
    client = IoTHubModuleClient.create_from_connection_string(
        connstr, server_verification_cert=simulator.ca_pem
    )
    try:
        with pytest.raises(CredentialError):
            await client.connect()
    finally:
        await client.shutdown()


# paho leaves the socket of a failed TLS handshake open; collect it here, where it is expected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_untrusted_server_certificate_is_a_client_error(simulator: EdgeHubSimulator) -> None:
    stranger = trustme.CA().cert_pem.bytes().decode()
    client = IoTHubModuleClient.create_from_connection_string(
        simulator.connection_string_for("sender"), server_verification_cert=stranger
    )
    try:
        with pytest.raises(ClientError):
            await client.connect()
    finally:
        await client.shutdown()
        gc.collect()


def test_expired_token_gets_connack_5(simulator: EdgeHubSimulator) -> None:
    raw = RawClient(simulator, "sender", module_token(simulator, "sender", ttl_secs=-10))
    try:
        assert raw.connect() == 5
    finally:
        raw.close()


def test_token_for_another_module_gets_connack_5(simulator: EdgeHubSimulator) -> None:
    token = module_token(simulator, "receiver", key=simulator.module_key("sender"))
    raw = RawClient(simulator, "sender", token)
    try:
        assert raw.connect() == 5
    finally:
        raw.close()


def test_valid_raw_token_is_accepted(simulator: EdgeHubSimulator) -> None:
    raw = RawClient(simulator, "sender", module_token(simulator, "sender"))
    try:
        assert raw.connect() == 0
    finally:
        raw.close()


async def test_two_simulators_run_side_by_side(
    simulator: EdgeHubSimulator, manifest_path: Path, tmp_path: Path
) -> None:
    second = start_simulator(manifest_path, tmp_path / "second")
    try:
        assert second.bind != simulator.bind
        first_clients, second_clients = ModuleClients(simulator), ModuleClients(second)
        try:
            one, two = first_clients.edge("sender"), second_clients.edge("sender")
            await one.connect()
            await two.connect()
            await one.patch_twin_reported_properties({"where": "first"})
            await two.patch_twin_reported_properties({"where": "second"})
            assert simulator.reported("sender") == {"where": "first"}
            assert second.reported("sender") == {"where": "second"}
        finally:
            await first_clients.shutdown_all()
            await second_clients.shutdown_all()
    finally:
        second.stop()


async def test_tcp_workload_uri_connects(manifest_path: Path, tmp_path: Path) -> None:
    simulator = start_simulator(manifest_path, tmp_path / "tcp", workload_port=15580)
    try:
        assert simulator.env_for("sender")["IOTEDGE_WORKLOADURI"] == f"http://{simulator.bind}:15580"
        assert (await edge_client_twin(simulator))["desired"]["level"] == 1
    finally:
        simulator.stop()
