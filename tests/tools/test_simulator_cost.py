"""The fleet cost probe: its client packets decode as the broker reads them, and one small run works."""

from pathlib import Path

import pytest

from edge_tools.bench.simulator_cost import main, measure
from edgehub_sim.mqtt.codec import (
    CONNECT,
    SUBSCRIBE,
    Connect,
    Subscribe,
    decode,
    encode_connect,
    encode_subscribe,
)
from tests.edgehub_sim.conftest import random_loopback


def _split(packet: bytes) -> tuple[int, int, bytes]:
    assert packet[1] < 0x80  # short packets: one length byte
    return packet[0] >> 4, packet[0] & 0x0F, packet[2:]


def test_client_packets_round_trip_through_the_decoder() -> None:
    connect = Connect(
        "dev-001/loader",
        "hub/dev-001/loader/?api-version=2019-10-01",
        b"SharedAccessSignature x",
        False,
        60,
        4,
    )
    kind, flags, body = _split(encode_connect(connect))
    assert kind == CONNECT and decode(kind, flags, body) == connect
    subscribe = Subscribe(7, [("$iothub/twin/PATCH/properties/desired/#", 1)])
    kind, flags, body = _split(encode_subscribe(subscribe))
    assert kind == SUBSCRIBE and decode(kind, flags, body) == subscribe


@pytest.mark.integration
def test_a_small_fleet_is_measured_with_configurations_and_connections() -> None:
    manifest = Path(__file__).parents[2] / "deployment.json"
    result = measure(
        manifest, 3, bind=random_loopback(), interval=1.0, seconds=0.5, configurations=True, connect=True
    )
    assert (result["devices"], result["connections"], result["configurations"]) == (
        3,
        3 * result["modulesPerDevice"],
        2,
    )
    assert result["rssMiB"] > 0 and result["cpuPercent"] >= 0


def test_cli_refuses_missing_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--devices", "2"])
    assert "--manifest" in capsys.readouterr().err
