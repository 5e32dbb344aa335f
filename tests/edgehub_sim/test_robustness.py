"""The broker under abuse: bad bytes, silence, takeovers, unknown topics, oversized and unacked messages."""

import asyncio
import socket
import time
from pathlib import Path

import pytest

from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import ModuleClients, sdk_message, start_simulator
from tests.edgehub_sim.rawmqtt import (
    PINGREQ,
    RawSession,
    connect_packet,
    puback_packet,
    publish_packet,
    subscribe_packet,
    tls_socket,
)

pytestmark = pytest.mark.integration


async def test_garbage_and_truncated_connects_do_not_disturb_other_clients(
    simulator: EdgeHubSimulator, clients: ModuleClients
) -> None:
    good = clients.edge("sender")
    await good.connect()
    plain = socket.create_connection((simulator.bind, 8883), timeout=5)
    plain.sendall(b"\x00GET / HTTP/1.1\r\n\r\n" * 10)
    garbage = tls_socket(simulator)
    garbage.sendall(b"\xff\xfe\xfd garbage")
    endless_length = tls_socket(simulator)
    endless_length.sendall(b"\x10\xff\xff\xff\xff\x7f")
    truncated = tls_socket(simulator)
    truncated.sendall(connect_packet("x/y", "u", "p")[:9])
    try:
        assert (await good.get_twin())["desired"]["level"] == 1
        await good.send_message_to_output(sdk_message(b"still fine"), "DLModelOutput")
        garbage.settimeout(5)
        assert garbage.recv(10) == b""
        endless_length.settimeout(5)
        assert endless_length.recv(10) == b""
    finally:
        for sock in (plain, garbage, endless_length, truncated):
            sock.close()
    await asyncio.to_thread(simulator.wait_for, lambda: len(simulator.routed_messages()) == 1)


def test_silence_beyond_one_and_a_half_keepalives_drops_the_link(simulator: EdgeHubSimulator) -> None:
    raw = RawSession(simulator, timeout=8)
    try:
        assert raw.connect(keepalive=1) == (False, 0)
        started = time.monotonic()
        assert raw.closed_by_server()
        assert 1.2 < time.monotonic() - started < 6  # 1.5 s plus slack for a loaded machine
    finally:
        raw.close()


def test_pingreq_keeps_the_link_alive(simulator: EdgeHubSimulator) -> None:
    raw = RawSession(simulator)
    try:
        raw.connect(keepalive=1)
        for _ in range(6):  # 3 s, twice the drop time
            raw.sock.sendall(PINGREQ)
            assert raw.read_packet() == (13, 0, b"")
            time.sleep(0.5)  # pacing the client, not synchronisation
        assert simulator.control.connected("receiver")
    finally:
        raw.close()


def test_second_connect_with_same_client_id_closes_the_first(simulator: EdgeHubSimulator) -> None:
    first, second = RawSession(simulator), RawSession(simulator)
    try:
        assert first.connect() == (False, 0)
        assert second.connect() == (True, 0)
        assert first.closed_by_server()
        second.sock.sendall(PINGREQ)
        assert second.read_packet()[0] == 13
    finally:
        first.close()
        second.close()


def test_second_connect_on_one_connection_drops_it(simulator: EdgeHubSimulator) -> None:
    raw = RawSession(simulator)
    try:
        raw.connect()
        raw.sock.sendall(connect_packet("a/b", "u", "p"))
        assert raw.closed_by_server()
    finally:
        raw.close()


@pytest.mark.parametrize(
    "topic",
    [
        "devices/other/modules/receiver/messages/events/",
        "devices/edge-sim-device/modules/sender/messages/events/",
        "some/unknown/topic",
    ],
)
def test_publish_to_a_foreign_or_unknown_topic_drops_the_link(
    simulator: EdgeHubSimulator, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = RawSession(simulator)
    try:
        raw.connect()
        raw.sock.sendall(publish_packet(topic, b"x"))
        assert raw.closed_by_server()
    finally:
        raw.close()
    assert "protocol violation" in caplog.text


def test_payload_over_262144_bytes_drops_the_link(simulator: EdgeHubSimulator) -> None:
    raw = RawSession(simulator)
    try:
        raw.connect()
        topic = f"devices/{simulator.device_id}/modules/receiver/messages/events/"
        raw.sock.sendall(publish_packet(topic, b"x" * 262145))
        assert raw.closed_by_server()
    finally:
        raw.close()
    assert simulator.upstream_messages() == []


async def test_sdk_refuses_messages_over_256_kb(clients: ModuleClients) -> None:
    sender = clients.edge("sender")
    with pytest.raises(ValueError):
        await sender.send_message_to_output(sdk_message(b"x" * 262145), "DLModelOutput")


async def test_unacknowledged_inputs_are_redelivered_with_dup(
    simulator: EdgeHubSimulator, clients: ModuleClients
) -> None:
    inputs = f"devices/{simulator.device_id}/modules/receiver/inputs/#"
    raw = RawSession(simulator)
    try:
        raw.connect()
        raw.sock.sendall(subscribe_packet(1, inputs))
        assert raw.read_packet()[0] == 9
        sender = clients.edge("sender")
        for index in range(3):
            await sender.send_message_to_output(sdk_message(f"n{index}".encode()), "DLModelOutput")
        first_round = [raw.read_publish() for _ in range(3)]
        assert [(p[2], p[3]) for p in first_round] == [(False, b"n0"), (False, b"n1"), (False, b"n2")]
    finally:
        raw.close()
    await asyncio.to_thread(simulator.wait_for, lambda: not simulator.control.connected("receiver"))
    assert simulator.control.queued("receiver") == 3
    again = RawSession(simulator)
    try:
        assert again.connect() == (True, 0)  # session present, subscription kept: no SUBSCRIBE
        second_round = [again.read_publish() for _ in range(3)]
        assert [(p[2], p[3]) for p in second_round] == [(True, b"n0"), (True, b"n1"), (True, b"n2")]
        for _, packet_id, _, _ in second_round:
            again.sock.sendall(puback_packet(packet_id))
        await asyncio.to_thread(simulator.wait_for, lambda: simulator.control.queued("receiver") == 0)
    finally:
        again.close()


async def test_restart_with_messages_in_flight_loses_and_reorders_nothing(
    manifest_path: Path, tmp_path: Path
) -> None:
    state = tmp_path / "inflight-state"
    simulator = start_simulator(manifest_path, state)
    bind = simulator.bind
    inputs = f"devices/{simulator.device_id}/modules/receiver/inputs/#"
    raw = RawSession(simulator)
    try:
        raw.connect()
        raw.sock.sendall(subscribe_packet(1, inputs))
        assert raw.read_packet()[0] == 9
        sender_clients = ModuleClients(simulator)
        sender = sender_clients.edge("sender")
        for index in range(300):
            await sender.send_message_to_output(sdk_message(f"n{index}".encode()), "DLModelOutput")
        await sender_clients.shutdown_all()
        for index in range(150):
            _, packet_id, _, payload = raw.read_publish()
            assert payload == f"n{index}".encode()
            if index < 100:
                raw.sock.sendall(puback_packet(packet_id))
        await asyncio.to_thread(simulator.wait_for, lambda: simulator.control.queued("receiver") == 200)
    finally:
        simulator.stop()  # with 50 messages still unacknowledged on a live connection
        raw.close()
    simulator = start_simulator(manifest_path, state, bind=bind)
    again = RawSession(simulator)
    try:
        assert again.connect() == (True, 0)
        for index in range(100, 300):
            _, packet_id, _, payload = again.read_publish()
            assert payload == f"n{index}".encode()
            again.sock.sendall(puback_packet(packet_id))
        await asyncio.to_thread(simulator.wait_for, lambda: simulator.control.queued("receiver") == 0)
    finally:
        again.close()
        simulator.stop()
