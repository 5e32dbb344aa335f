"""MQTT packet codec: what the SDK sends decodes; anything outside the subset is refused."""

import asyncio
import struct

import pytest

from edgehub_sim.errors import MalformedPacket
from edgehub_sim.mqtt.codec import (
    Connect,
    PubAck,
    Publish,
    Subscribe,
    Unsubscribe,
    decode,
    encode_connack,
    encode_publish,
    encode_suback,
    read_packet,
)
from edgehub_sim.mqtt.topics import matches, parse_query, parse_telemetry, valid_filter
from tests.edgehub_sim.rawmqtt import connect_packet, frame, publish_packet, subscribe_packet


async def parse(data: bytes) -> tuple[int, int, bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await read_packet(reader)


async def test_connect_decodes_credentials_and_flags() -> None:
    packet = decode(*await parse(connect_packet("dev/mod", "hub/dev/mod/?x=1", "token", keepalive=30)))
    assert packet == Connect("dev/mod", "hub/dev/mod/?x=1", b"token", False, 30, 4)


async def test_publish_subscribe_and_puback_decode() -> None:
    assert decode(*await parse(publish_packet("a/b", b"payload", 7))) == Publish("a/b", b"payload", 1, 7)
    assert decode(*await parse(subscribe_packet(3, "x/#"))) == Subscribe(3, [("x/#", 1)])
    assert decode(*await parse(frame(0x40, struct.pack("!H", 9)))) == PubAck(9)
    unsubscribe = frame(0xA2, struct.pack("!H", 4) + struct.pack("!H", 3) + b"x/#")
    assert decode(*await parse(unsubscribe)) == Unsubscribe(4, ["x/#"])


async def test_server_packets_encode_as_mqtt_expects() -> None:
    assert encode_connack(True, 0) == b"\x20\x02\x01\x00"
    assert encode_suback(5, [1, 0x80]) == b"\x90\x04\x00\x05\x01\x80"
    encoded = encode_publish(Publish("t", b"x" * 200, 1, 2, dup=True))
    assert encoded[0] == 0x3A and encoded[1:3] == bytes([0xCD, 0x01])  # 205 in two length bytes
    with pytest.raises(ValueError):
        encode_publish(Publish("t", b"", 1, None))


@pytest.mark.parametrize(
    "data",
    [
        frame(0x10, b"\x00\x04MQTX\x04\xc0\x00\x3c"),  # wrong protocol name
        frame(0x10, b"\x00\x04MQTT\x04\xc1\x00\x3c\x00\x00"),  # reserved flag
        frame(0x10, b"\x00\x04MQTT\x04\xc0\x00"),  # cut short
        frame(0x34, b"\x00\x01t\x00\x01"),  # QoS 2
        frame(0x80, struct.pack("!H", 1) + b"\x00\x01t\x01"),  # SUBSCRIBE with wrong flags
        frame(0x82, struct.pack("!H", 1)),  # SUBSCRIBE without filters
        frame(0xC0, b"\x00"),  # PINGREQ with a body
        frame(0x50, b"\x00\x01"),  # PUBREC: not in the subset
        frame(0x32, b"\x00\x02\xff\xfe\x00\x01"),  # topic not UTF-8
    ],
)
async def test_malformed_packets_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedPacket):
        decode(*await parse(data))


async def test_overlong_remaining_length_is_refused() -> None:
    with pytest.raises(MalformedPacket):
        await parse(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(MalformedPacket):
        await parse(b"\x30\xff\xff\xff\x7f")  # 256 MiB: over the size limit


async def test_truncated_packet_is_an_incomplete_read() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        await parse(publish_packet("a", b"xyz")[:-1])


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("$iothub/twin/res/#", "$iothub/twin/res/200/?$rid=1", True),
        ("devices/d/modules/m/inputs/#", "devices/d/modules/m/inputs/in/%24.cdid=d", True),
        ("devices/d/modules/m/inputs/#", "devices/d/modules/n/inputs/in/", False),
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/b", "a/b/c", False),
    ],
)
def test_filter_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


def test_filter_validation_and_topic_parsing() -> None:
    assert valid_filter("a/#") and valid_filter("a/+/b")
    assert not valid_filter("a/#/b") and not valid_filter("a/b+") and not valid_filter("")
    assert parse_query("$rid=1&$version=%32") == {"$rid": "1", "$version": "2"}
    telemetry = parse_telemetry("devices/d/modules/m/messages/events/%24.on=o")
    assert telemetry is not None and telemetry.properties == "%24.on=o"
    assert parse_telemetry("devices/d/modules/m/inputs/x") is None
