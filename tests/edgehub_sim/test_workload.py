"""The workload API is no weaker than IoT Edge's (issue 17, item 15).

IoT Edge (1.2.4 and later) gives every module its own workload socket and signs only for the module
whose socket the request came in on. The simulator used to serve one world-writable socket that signed
a SAS for any module named in the path: any local user could mint tokens for every module. Now each
module has its own socket, owner-only by default, and a request for another module (or another
generation id) is refused.
"""

import json
import socket
import stat
from pathlib import Path

import httpx
import pytest

from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import edge_client_twin, start_simulator, workload_client, workload_socket
from tests.reliability.invariants import poll

pytestmark = pytest.mark.integration

SIGN = {"keyId": "primary", "algo": "HMACSHA256", "data": "YQ=="}
API = "api-version=2019-01-30"


def test_each_module_has_its_own_socket_that_signs_only_for_it(simulator: EdgeHubSimulator) -> None:
    sender, receiver = workload_socket(simulator, "sender"), workload_socket(simulator, "receiver")
    assert sender != receiver and sender.is_socket() and receiver.is_socket()
    genid = simulator.env_for("sender")["IOTEDGE_MODULEGENERATIONID"]
    with workload_client(simulator, "sender") as http:
        own = http.post(f"/modules/sender/genid/{genid}/sign?{API}", content=json.dumps(SIGN))
        assert own.status_code == 200 and "digest" in own.json()
        other_genid = simulator.env_for("receiver")["IOTEDGE_MODULEGENERATIONID"]
        foreign = http.post(f"/modules/receiver/genid/{other_genid}/sign?{API}", content=json.dumps(SIGN))
        assert foreign.status_code == 403 and "digest" not in foreign.json()
        stale = http.post(f"/modules/sender/genid/{genid}-old/sign?{API}", content=json.dumps(SIGN))
        assert stale.status_code == 403
        assert http.get(f"/trust-bundle?{API}").json() == {"certificate": simulator.ca_pem}


def test_sockets_are_not_world_writable_by_default(simulator: EdgeHubSimulator) -> None:
    for module in ("sender", "receiver"):
        path = workload_socket(simulator, module)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_sockets_can_be_opened_to_other_users_for_containers(
    manifest_path: Path, tmp_path: Path
) -> None:
    """Containers run each module as its own user (the Docker topology): `0666`, as IoT Edge's per-module
    sockets are; each still signs only for its module."""
    simulator = start_simulator(manifest_path, tmp_path / "shared", workload_socket_mode=0o666)
    try:
        path = workload_socket(simulator, "sender")
        assert stat.S_IMODE(path.stat().st_mode) == 0o666
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
        genid = simulator.env_for("receiver")["IOTEDGE_MODULEGENERATIONID"]
        with workload_client(simulator, "sender") as http:
            assert _sign_status(http, "receiver", genid) == 403
        assert (await edge_client_twin(simulator))["desired"]["level"] == 1
    finally:
        simulator.stop()
    assert not path.exists()  # removed on stop


def _sign_status(http: httpx.Client, module: str, genid: str) -> int:
    return http.post(f"/modules/{module}/genid/{genid}/sign?{API}", content=json.dumps(SIGN)).status_code


def test_tcp_workload_ports_are_per_module_too(manifest_path: Path, tmp_path: Path) -> None:
    simulator = start_simulator(manifest_path, tmp_path / "tcp", workload_port=15590)
    try:
        sender_uri = simulator.env_for("sender")["IOTEDGE_WORKLOADURI"]
        receiver_uri = simulator.env_for("receiver")["IOTEDGE_WORKLOADURI"]
        assert sender_uri.startswith("http://") and sender_uri != receiver_uri
        genid = simulator.env_for("receiver")["IOTEDGE_MODULEGENERATIONID"]
        with httpx.Client(base_url=sender_uri) as http:
            assert _sign_status(http, "receiver", genid) == 403
        with httpx.Client(base_url=receiver_uri) as http:
            assert _sign_status(http, "receiver", genid) == 200
    finally:
        simulator.stop()


def test_a_socket_serves_at_most_ten_connections_at_once(simulator: EdgeHubSimulator) -> None:
    """IoT Edge throttles each module socket to 10 simultaneous requests, so one module cannot starve
    the workload API; the simulator refuses the 11th connection's request (503) until one closes."""
    path = workload_socket(simulator, "sender")
    held = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(10)]
    try:
        for sock in held:
            sock.connect(str(path))
        with workload_client(simulator, "sender") as http:
            # Bounded: the simulator accepts the held connections in order, within milliseconds.
            assert poll(lambda: http.get(f"/trust-bundle?{API}").status_code == 503, within=5)
            held.pop().close()
            assert poll(lambda: http.get(f"/trust-bundle?{API}").status_code == 200, within=5)
        with workload_client(simulator, "receiver") as other:  # other modules' sockets are not affected
            assert other.get(f"/trust-bundle?{API}").status_code == 200
    finally:
        for sock in held:
            sock.close()
