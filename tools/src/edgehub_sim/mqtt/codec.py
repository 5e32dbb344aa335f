"""MQTT 3.1.1 packet codec: just the packet types the IoT Hub SDK uses (no QoS 2, retain or will).

Decoding is strict: anything outside the subset raises `MalformedPacket`, and the broker drops that
one connection.
"""

import asyncio
import struct
from dataclasses import dataclass, field

from edgehub_sim.errors import MalformedPacket

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

#: edgeHub's MaxInboundMessageSize for the payload; the packet may add a topic of up to 64 KiB.
MAX_PAYLOAD = 262144
MAX_REMAINING_LENGTH = MAX_PAYLOAD + 65536 + 16

CONNACK_ACCEPTED = 0
CONNACK_BAD_PROTOCOL = 1
CONNACK_BAD_CREDENTIALS = 4
CONNACK_NOT_AUTHORIZED = 5


@dataclass(frozen=True)
class Connect:
    """A CONNECT packet."""

    client_id: str
    username: str | None
    password: bytes | None
    clean_session: bool
    keepalive: int
    protocol_level: int


@dataclass(frozen=True)
class Publish:
    """A PUBLISH packet (QoS 0 or 1)."""

    topic: str
    payload: bytes
    qos: int = 1
    packet_id: int | None = None
    dup: bool = False


@dataclass(frozen=True)
class PubAck:
    """A PUBACK packet."""

    packet_id: int


@dataclass(frozen=True)
class Subscribe:
    """A SUBSCRIBE packet: (filter, requested QoS) pairs."""

    packet_id: int
    filters: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Unsubscribe:
    """An UNSUBSCRIBE packet."""

    packet_id: int
    filters: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PingReq:
    """A PINGREQ packet."""


@dataclass(frozen=True)
class Disconnect:
    """A DISCONNECT packet."""


Packet = Connect | Publish | PubAck | Subscribe | Unsubscribe | PingReq | Disconnect


class _Reader:
    """Cursor over one packet's variable header and payload."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int) -> bytes:
        if n > self.remaining():
            raise MalformedPacket("packet shorter than its fields")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def binary(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPacket("string is not UTF-8") from exc

    def rest(self) -> bytes:
        return self.take(self.remaining())


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """Read one raw packet: (type, flags, body). Raises EOF/IncompleteRead or MalformedPacket."""
    first = (await reader.readexactly(1))[0]
    length = 0
    for shift in range(0, 28, 7):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
    else:
        raise MalformedPacket("remaining length longer than 4 bytes")
    if length > MAX_REMAINING_LENGTH:
        raise MalformedPacket(f"packet of {length} bytes exceeds the limit")
    body = await reader.readexactly(length)
    return first >> 4, first & 0x0F, body


def decode(packet_type: int, flags: int, body: bytes) -> Packet:
    """Decode a client-to-server packet."""
    r = _Reader(body)
    if packet_type == CONNECT:
        return _decode_connect(r)
    if packet_type == PUBLISH:
        return _decode_publish(flags, r)
    if packet_type == PUBACK:
        packet_id = r.u16()
        _expect_end(r)
        return PubAck(packet_id)
    if packet_type == SUBSCRIBE:
        _expect_flags(flags, 0x02)
        packet_id = r.u16()
        filters: list[tuple[str, int]] = []
        while r.remaining():
            filters.append((r.text(), r.u8() & 0x03))
        if not filters:
            raise MalformedPacket("SUBSCRIBE without filters")
        return Subscribe(packet_id, filters)
    if packet_type == UNSUBSCRIBE:
        _expect_flags(flags, 0x02)
        packet_id = r.u16()
        names: list[str] = []
        while r.remaining():
            names.append(r.text())
        if not names:
            raise MalformedPacket("UNSUBSCRIBE without filters")
        return Unsubscribe(packet_id, names)
    if packet_type == PINGREQ:
        _expect_end(r)
        return PingReq()
    if packet_type == DISCONNECT:
        _expect_end(r)
        return Disconnect()
    raise MalformedPacket(f"unsupported packet type {packet_type}")


def _decode_connect(r: _Reader) -> Connect:
    protocol = r.text()
    level = r.u8()
    if protocol != "MQTT":
        raise MalformedPacket(f"unknown protocol name {protocol!r}")
    flags = r.u8()
    if flags & 0x01:
        raise MalformedPacket("reserved CONNECT flag set")
    keepalive = r.u16()
    client_id = r.text()
    if flags & 0x04:
        r.text()  # will topic: the IoT Hub dialect has none, but a well-formed will is tolerated
        r.binary()
    username = r.text() if flags & 0x80 else None
    password = r.binary() if flags & 0x40 else None
    _expect_end(r)
    return Connect(
        client_id=client_id,
        username=username,
        password=password,
        clean_session=bool(flags & 0x02),
        keepalive=keepalive,
        protocol_level=level,
    )


def _decode_publish(flags: int, r: _Reader) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos > 1:
        raise MalformedPacket(f"QoS {qos} is not supported")
    topic = r.text()
    packet_id = r.u16() if qos else None
    return Publish(topic=topic, payload=r.rest(), qos=qos, packet_id=packet_id, dup=bool(flags & 8))


def _expect_flags(flags: int, expected: int) -> None:
    if flags != expected:
        raise MalformedPacket(f"fixed-header flags {flags:#x}, expected {expected:#x}")


def _expect_end(r: _Reader) -> None:
    if r.remaining():
        raise MalformedPacket("trailing bytes in packet")


def _frame(first: int, body: bytes) -> bytes:
    length = len(body)
    out = bytearray([first])
    while True:
        byte = length & 0x7F
        length >>= 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes(out) + body


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def encode_connack(session_present: bool, return_code: int) -> bytes:
    """CONNACK with the session-present flag and return code."""
    return _frame(CONNACK << 4, bytes([1 if session_present else 0, return_code]))


def encode_publish(publish: Publish) -> bytes:
    """PUBLISH from the server (QoS 0 or 1)."""
    first = (PUBLISH << 4) | (publish.qos << 1) | (8 if publish.dup else 0)
    body = _text(publish.topic)
    if publish.qos:
        if publish.packet_id is None:
            raise ValueError("QoS 1 PUBLISH needs a packet id")
        body += struct.pack("!H", publish.packet_id)
    return _frame(first, body + publish.payload)


def encode_puback(packet_id: int) -> bytes:
    """PUBACK for a client PUBLISH."""
    return _frame(PUBACK << 4, struct.pack("!H", packet_id))


def encode_suback(packet_id: int, granted: list[int]) -> bytes:
    """SUBACK granting the given QoS per filter."""
    return _frame(SUBACK << 4, struct.pack("!H", packet_id) + bytes(granted))


def encode_unsuback(packet_id: int) -> bytes:
    """UNSUBACK."""
    return _frame(UNSUBACK << 4, struct.pack("!H", packet_id))


def encode_pingresp() -> bytes:
    """PINGRESP."""
    return _frame(PINGRESP << 4, b"")


def encode_connect(connect: Connect) -> bytes:
    """CONNECT as a client sends it (the fleet cost probe's hand-built clients)."""
    flags = (0x80 if connect.username is not None else 0) | (0x40 if connect.password is not None else 0)
    flags |= 0x02 if connect.clean_session else 0
    body = _text("MQTT") + bytes([connect.protocol_level, flags]) + struct.pack("!H", connect.keepalive)
    body += _text(connect.client_id)
    if connect.username is not None:
        body += _text(connect.username)
    if connect.password is not None:
        body += struct.pack("!H", len(connect.password)) + connect.password
    return _frame(CONNECT << 4, body)


def encode_subscribe(subscribe: Subscribe) -> bytes:
    """SUBSCRIBE as a client sends it."""
    body = struct.pack("!H", subscribe.packet_id)
    for topic_filter, qos in subscribe.filters:
        body += _text(topic_filter) + bytes([qos])
    return _frame((SUBSCRIBE << 4) | 0x02, body)
