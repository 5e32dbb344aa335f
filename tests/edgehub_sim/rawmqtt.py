"""Raw MQTT and TLS clients for what the SDK will not do: forged tokens, bad bytes, odd topics."""

import socket
import ssl
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
