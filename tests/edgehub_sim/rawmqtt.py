"""Raw MQTT and TLS clients for what the SDK will not do: forged tokens, bad bytes, odd topics."""

import socket
import ssl
import struct
import threading
from dataclasses import dataclass, field

import paho.mqtt.client as paho  # type: ignore[import-untyped]

from edgehub_sim.sas import make_token
from edgehub_sim.server import EdgeHubSimulator


def client_context(ca_pem: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def tls_socket(simulator: EdgeHubSimulator, port: int = 8883) -> ssl.SSLSocket:
    """A TLS connection to the simulator with no MQTT spoken yet."""
    raw = socket.create_connection((simulator.bind, port), timeout=10)
    return client_context(simulator.ca_pem).wrap_socket(raw, server_hostname=simulator.bind)


def module_token(
    simulator: EdgeHubSimulator, module: str, ttl_secs: int = 3600, key: str | None = None
) -> str:
    resource = f"{simulator.hub_name}/devices/{simulator.device_id}/modules/{module}"
    return make_token(resource, key or simulator.module_key(module), ttl_secs)


@dataclass
class RawClient:
    """A paho client connected with an explicit password; records CONNACK and messages."""

    simulator: EdgeHubSimulator
    module: str
    password: str
    keepalive: int = 60
    connack: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    return_code: int | None = None
    messages: list[paho.MQTTMessage] = field(default_factory=list)
    received: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        client_id = f"{self.simulator.device_id}/{self.module}"
        self.client = paho.Client(client_id=client_id, clean_session=False, protocol=paho.MQTTv311)
        self.client.username_pw_set(
            f"{self.simulator.hub_name}/{client_id}/?api-version=2019-10-01", self.password
        )
        self.client.tls_set_context(client_context(self.simulator.ca_pem))
        self.client.reconnect_delay_set(60, 120)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, _client: paho.Client, _userdata: object, _flags: object, rc: int) -> None:
        self.return_code = rc
        self.connack.set()

    def _on_disconnect(self, _client: paho.Client, _userdata: object, _rc: int) -> None:
        self.disconnected.set()

    def _on_message(self, _client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        with self.received:
            self.messages.append(message)
            self.received.notify_all()

    def connect(self, timeout: float = 10.0) -> int:
        """Connect and return the CONNACK return code."""
        self.client.connect(self.simulator.bind, 8883, keepalive=self.keepalive)
        self.client.loop_start()
        assert self.connack.wait(timeout), "no CONNACK"
        assert self.return_code is not None
        return self.return_code

    def wait_messages(self, count: int, timeout: float = 10.0) -> list[paho.MQTTMessage]:
        with self.received:
            assert self.received.wait_for(lambda: len(self.messages) >= count, timeout), self.messages
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:  # paho keeps the socket of a refused connection open
            sock.close()


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def frame(first: int, body: bytes) -> bytes:
    """Fixed header + body."""
    length, out = len(body), bytearray([first])
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out) + body


def connect_packet(client_id: str, username: str, password: str, keepalive: int = 60) -> bytes:
    variable = _text("MQTT") + bytes([4, 0xC0]) + struct.pack("!H", keepalive)
    return frame(0x10, variable + _text(client_id) + _text(username) + _text(password))


def subscribe_packet(packet_id: int, topic_filter: str) -> bytes:
    return frame(0x82, struct.pack("!H", packet_id) + _text(topic_filter) + b"\x01")


def publish_packet(topic: str, payload: bytes, packet_id: int = 1) -> bytes:
    return frame(0x32, _text(topic) + struct.pack("!H", packet_id) + payload)


def puback_packet(packet_id: int) -> bytes:
    return frame(0x40, struct.pack("!H", packet_id))


PINGREQ = b"\xc0\x00"


class RawSession:
    """A TLS socket speaking hand-built MQTT, for byte-level tests."""

    def __init__(self, simulator: EdgeHubSimulator, module: str = "receiver", timeout: float = 10.0) -> None:
        self.simulator = simulator
        self.module = module
        self.sock = tls_socket(simulator)
        self.sock.settimeout(timeout)
        self._buffer = b""

    def connect(self, keepalive: int = 60) -> tuple[bool, int]:
        """Send CONNECT with a valid token; returns (session present, return code)."""
        client_id = f"{self.simulator.device_id}/{self.module}"
        username = f"{self.simulator.hub_name}/{client_id}/?api-version=2019-10-01"
        self.sock.sendall(
            connect_packet(client_id, username, module_token(self.simulator, self.module), keepalive)
        )
        packet_type, _, body = self.read_packet()
        assert packet_type == 2, packet_type
        return bool(body[0] & 1), body[1]

    def _take(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def read_packet(self) -> tuple[int, int, bytes]:
        first = self._take(1)[0]
        length, shift = 0, 0
        while True:
            byte = self._take(1)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first >> 4, first & 0x0F, self._take(length)

    def read_publish(self) -> tuple[str, int, bool, bytes]:
        """(topic, packet id, dup, payload) of the next PUBLISH, skipping other packets."""
        while True:
            packet_type, flags, body = self.read_packet()
            if packet_type == 3:
                topic_length = struct.unpack("!H", body[:2])[0]
                topic = body[2 : 2 + topic_length].decode()
                packet_id = struct.unpack("!H", body[2 + topic_length : 4 + topic_length])[0]
                return topic, packet_id, bool(flags & 8), body[4 + topic_length :]

    def closed_by_server(self) -> bool:
        """True once the server closes the connection (within the socket timeout)."""
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()
