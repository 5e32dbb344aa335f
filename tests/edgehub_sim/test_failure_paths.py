"""Failure paths of the simulator itself: start-up, workload API, odd MQTT sequences."""

import errno
import json
from pathlib import Path

import pytest

from edgehub_sim.hub import Hub
from edgehub_sim.methods import decode_payload
from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import start_simulator, workload_client
from tests.edgehub_sim.rawmqtt import PINGREQ, RawSession, connect_packet, frame, publish_packet, tls_socket

pytestmark = pytest.mark.integration


def test_workload_api_serves_trust_bundle_and_refuses_bad_sign_requests(
    simulator: EdgeHubSimulator,
) -> None:
    with workload_client(simulator) as http:
        assert http.get("/trust-bundle?api-version=2019-01-30").json() == {"certificate": simulator.ca_pem}
        genid = simulator.env_for("sender")["IOTEDGE_MODULEGENERATIONID"]
        sign = f"/modules/sender/genid/{genid}/sign?api-version=2019-01-30"
        assert http.post(sign, content=b"{nope").status_code == 400
        bad_algo = {"keyId": "primary", "algo": "MD5", "data": "YQ=="}
        assert http.post(sign, content=json.dumps(bad_algo)).status_code == 400
        not_base64 = {"keyId": "primary", "algo": "HMACSHA256", "data": "%%%"}
        assert http.post(sign, content=json.dumps(not_base64)).status_code == 400
        good = {"keyId": "primary", "algo": "HMACSHA256", "data": "YQ=="}
        assert "digest" in http.post(sign, content=json.dumps(good)).json()


def test_address_in_use_fails_start_and_leaves_the_first_simulator_working(
    simulator: EdgeHubSimulator, manifest_path: Path, tmp_path: Path
) -> None:
    with pytest.raises(OSError) as taken:
        start_simulator(manifest_path, tmp_path / "clash", bind=simulator.bind)
    assert taken.value.errno == errno.EADDRINUSE
    assert not (tmp_path / "clash" / "ready").exists()
    raw = RawSession(simulator)
    try:
        assert raw.connect() == (False, 0)
    finally:
        raw.close()


def test_lifecycle_misuse_is_refused(
    simulator: EdgeHubSimulator, manifest_path: Path, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="already started"):
        simulator.start()
    idle = EdgeHubSimulator(manifest_path, tmp_path / "idle")
    with pytest.raises(RuntimeError, match="not running"):
        idle.env_for("sender")
    idle.stop()  # stopping a simulator that never started is a no-op


def test_long_state_dir_gets_a_short_workload_socket(manifest_path: Path, tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    simulator = start_simulator(manifest_path, deep)
    try:
        uri = simulator.env_for("sender")["IOTEDGE_WORKLOADURI"]
        assert len(uri) < 108 and Path(uri.removeprefix("unix://")).is_socket()
    finally:
        simulator.stop()


def test_unknown_module_and_old_protocol_are_refused_at_connect(simulator: EdgeHubSimulator) -> None:
    ghost = RawSession(simulator, module="ghost")
    try:
        ghost.sock.sendall(connect_packet(f"{simulator.device_id}/ghost", "u", "p"))
        assert ghost.read_packet() == (2, 0, b"\x00\x05")
    finally:
        ghost.close()
    old = tls_socket(simulator)
    try:
        mqtt31 = b"\x00\x06MQIsdp\x03\xc0\x00\x3c"  # MQTT 3.1 is level 3 under another name
        old.sendall(frame(0x10, mqtt31 + b"\x00\x01a\x00\x01u\x00\x01p"))
        old.settimeout(5)
        assert old.recv(10) == b""  # not MQTT 3.1.1 at all: dropped without CONNACK
    finally:
        old.close()
    level3 = tls_socket(simulator)
    try:
        level3.sendall(frame(0x10, b"\x00\x04MQTT\x03\xc0\x00\x3c\x00\x01a\x00\x01u\x00\x01p"))
        level3.settimeout(5)
        assert level3.recv(10) == b"\x20\x02\x00\x01"
    finally:
        level3.close()


def test_first_packet_other_than_connect_drops_the_link(simulator: EdgeHubSimulator) -> None:
    raw = RawSession(simulator)
    try:
        raw.sock.sendall(publish_packet("a", b"b"))
        assert raw.closed_by_server()
    finally:
        raw.close()


def test_stray_or_bad_method_responses(simulator: EdgeHubSimulator) -> None:
    raw = RawSession(simulator)
    try:
        raw.connect()
        raw.sock.sendall(publish_packet("$iothub/methods/res/200/?$rid=unknown", b"{}", 1))
        assert raw.read_packet() == (4, 0, b"\x00\x01")  # acknowledged, ignored
        raw.sock.sendall(publish_packet("$iothub/methods/res/OK/?$rid=1", b"{}", 2))
        assert raw.closed_by_server()
    finally:
        raw.close()


def test_method_reply_payload_decoding() -> None:
    assert decode_payload(b"") is None
    assert decode_payload(b'{"a": 1}') == {"a": 1}
    assert decode_payload(b"not json") == "not json"


def test_an_internal_error_costs_one_connection_not_the_broker(
    simulator: EdgeHubSimulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_route(*_: object) -> None:
        raise RuntimeError("bug in routing")

    monkeypatch.setattr(Hub, "route", broken_route)
    victim, bystander = RawSession(simulator, "sender"), RawSession(simulator, "receiver")
    try:
        victim.connect()
        bystander.connect()
        victim.sock.sendall(
            publish_packet(f"devices/{simulator.device_id}/modules/sender/messages/events/", b"x")
        )
        assert victim.closed_by_server()
        bystander.sock.sendall(PINGREQ)
        assert bystander.read_packet() == (13, 0, b"")
    finally:
        victim.close()
        bystander.close()
    assert "unexpected error serving sender" in caplog.text
