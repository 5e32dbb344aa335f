"""One module's MQTT connection: CONNECT/auth, the IoT Hub topics, and the QoS-1 sender.

Anything the subset does not allow (malformed bytes, a second CONNECT, a topic IoT Hub does not know,
an oversized payload, silence past 1.5 × keep-alive) drops this connection only.
"""

import asyncio
import json
import logging
import ssl
from urllib.parse import unquote

from edgehub_sim.errors import AuthError, MalformedPacket, TwinPatchError, UnknownModule
from edgehub_sim.hub import Hub
from edgehub_sim.mqtt.codec import (
    CONNACK_BAD_PROTOCOL,
    CONNACK_NOT_AUTHORIZED,
    CONNECT,
    MAX_PAYLOAD,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PubAck,
    Publish,
    Subscribe,
    Unsubscribe,
    decode,
    encode_connack,
    encode_pingresp,
    encode_puback,
    encode_publish,
    encode_suback,
    encode_unsuback,
    read_packet,
)
from edgehub_sim.mqtt.session import Session
from edgehub_sim.mqtt.topics import parse_query, parse_telemetry, valid_filter

logger = logging.getLogger(__name__)

#: Time a new connection gets to send its CONNECT.
CONNECT_TIMEOUT_SECS = 10.0
#: Queued messages sent ahead of PUBACKs, per connection.
INFLIGHT_WINDOW = 100


class ProtocolViolation(Exception):
    """The client broke an IoT Hub rule; its connection is dropped."""


class Connection:
    """Serves one TCP+TLS connection until it ends."""

    def __init__(self, hub: Hub, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._hub = hub
        self._reader = reader
        self._writer = writer
        self._session: Session | None = None
        self._module = ""
        self._device = ""
        self._transient: set[int] = set()
        self._last_pid = 0
        self._finished = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Serve the connection; never raises except on cancellation."""
        try:
            await self._serve()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            logger.debug("connection of %s closed by the peer", self._module or "a client")
        except MalformedPacket as exc:
            logger.warning("malformed packet from %s: %s; dropping it", self._module or "?", exc)
        except ProtocolViolation as exc:
            logger.error("protocol violation by %s: %s; dropping it", self._module or "?", exc)
        except TimeoutError:
            logger.warning("%s was silent too long; dropping it", self._module or "a client")
        except Exception:  # a bug here must cost one connection, never the broker
            logger.exception("unexpected error serving %s; dropping it", self._module or "a client")
        finally:
            await self._teardown()

    async def close(self) -> None:
        """Drop the connection and wait until it has detached from its session."""
        # Aborting the transport ends the pending read with EOF, so `run` tears down normally
        # (cancelling the task instead makes asyncio's stream callback log a spurious error).
        self._writer.transport.abort()
        await self._finished.wait()

    def send_transient(self, topic: str, payload: bytes) -> None:
        """QoS-1 PUBLISH of twin/method traffic: tracked until PUBACK, never queued."""
        if self._writer.is_closing():
            return
        packet_id = self._allocate_packet_id()
        self._transient.add(packet_id)
        self._writer.write(encode_publish(Publish(topic, payload, 1, packet_id)))

    async def _teardown(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        if self._session is not None:
            self._hub.detach(self, self._session)
        self._writer.close()
        self._finished.set()

    async def _serve(self) -> None:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECS):
            packet_type, flags, body = await read_packet(self._reader)
        if packet_type != CONNECT:
            raise MalformedPacket("the first packet is not CONNECT")
        connect = decode(packet_type, flags, body)
        assert isinstance(connect, Connect)
        if connect.protocol_level != 4:
            await self._refuse(CONNACK_BAD_PROTOCOL, f"protocol level {connect.protocol_level}")
            return
        try:
            self._device, self._module = self._hub.authenticate(connect)
        except (AuthError, UnknownModule) as exc:
            await self._refuse(CONNACK_NOT_AUTHORIZED, str(exc))
            return
        session, present = await self._hub.attach(self, connect.client_id, connect.clean_session)
        self._session = session
        self._writer.write(encode_connack(present, 0))
        logger.info("%s connected (session present: %s)", connect.client_id, present)
        self._sender = asyncio.create_task(self._send_queued(session))
        session.wake.set()
        timeout = 1.5 * connect.keepalive if connect.keepalive else None
        while True:
            async with asyncio.timeout(timeout):
                packet_type, flags, body = await read_packet(self._reader)
            packet = decode(packet_type, flags, body)
            if isinstance(packet, Disconnect):
                logger.info("%s disconnected", connect.client_id)
                return
            self._handle(session, packet)
            await self._writer.drain()

    async def _refuse(self, return_code: int, reason: str) -> None:
        logger.warning("refusing CONNECT (return code %d): %s", return_code, reason)
        self._writer.write(encode_connack(False, return_code))
        await self._writer.drain()

    def _handle(self, session: Session, packet: Packet) -> None:
        if isinstance(packet, Publish):
            self._on_publish(packet)
        elif isinstance(packet, PubAck):
            if packet.packet_id in self._transient:
                self._transient.discard(packet.packet_id)
            elif not self._hub.acknowledge(session, packet.packet_id):
                logger.debug("PUBACK for unknown packet id %d", packet.packet_id)
        elif isinstance(packet, Subscribe):
            granted = [min(qos, 1) if valid_filter(f) else 0x80 for f, qos in packet.filters]
            self._writer.write(encode_suback(packet.packet_id, granted))
            added = {f for f, _ in packet.filters if valid_filter(f)}
            self._hub.set_subscriptions(session, session.subscriptions | added)
        elif isinstance(packet, Unsubscribe):
            self._writer.write(encode_unsuback(packet.packet_id))
            self._hub.set_subscriptions(session, session.subscriptions - set(packet.filters))
        elif isinstance(packet, PingReq):
            self._writer.write(encode_pingresp())
        else:
            raise MalformedPacket(f"unexpected {type(packet).__name__} after CONNECT")

    def _on_publish(self, packet: Publish) -> None:
        if len(packet.payload) > MAX_PAYLOAD:
            raise ProtocolViolation(f"payload of {len(packet.payload)} bytes exceeds {MAX_PAYLOAD}")
        topic, _, query = packet.topic.partition("?")
        telemetry = parse_telemetry(topic)
        if telemetry is not None:
            if (telemetry.device_id, telemetry.module_id) != (self._device, self._module):
                raise ProtocolViolation("publish to another module's telemetry topic")
            self._hub.route(self._module, telemetry.properties, packet.payload, self._device)
        elif topic == "$iothub/twin/GET/":
            rid = parse_query(query).get("$rid", "")
            body = json.dumps(self._hub.twin_sections(self._module, self._device)).encode("utf-8")
            self.send_transient(f"$iothub/twin/res/200/?$rid={rid}", body)
        elif topic == "$iothub/twin/PATCH/properties/reported/":
            self._on_reported_patch(parse_query(query).get("$rid", ""), packet.payload)
        elif topic.startswith("$iothub/methods/res/"):
            self._on_method_response(topic, query, packet.payload)
        else:
            raise ProtocolViolation(f"publish to unknown topic {packet.topic!r}")
        if packet.qos and packet.packet_id is not None:
            self._writer.write(encode_puback(packet.packet_id))

    def _on_reported_patch(self, rid: str, payload: bytes) -> None:
        try:
            version = self._hub.patch_reported(self._module, json.loads(payload), self._device)
        except (ValueError, TwinPatchError) as exc:
            logger.warning("bad reported patch from %s: %s", self._module, exc)
            self.send_transient(f"$iothub/twin/res/400/?$rid={rid}", b"")
            return
        self.send_transient(f"$iothub/twin/res/204/?$rid={rid}&$version={version}", b"")

    def _on_method_response(self, topic: str, query: str, payload: bytes) -> None:
        parts = topic.split("/")
        try:
            status = int(parts[3])
        except (IndexError, ValueError) as exc:
            raise ProtocolViolation(f"bad method response topic {topic!r}") from exc
        rid = unquote(parse_query(query).get("$rid", ""))
        self._hub.methods.resolve(rid, status, payload)

    async def _send_queued(self, session: Session) -> None:
        """Send the session's queue, oldest first, keeping at most INFLIGHT_WINDOW unacknowledged."""
        while True:
            await session.wake.wait()
            session.wake.clear()
            while len(session.inflight) < INFLIGHT_WINDOW:
                message, expired = session.pop_next()
                self._hub.drop_expired(expired)
                if message is None:
                    break
                if not session.subscribed(message.topic):
                    session.put_back(message)
                    break
                packet_id = self._allocate_packet_id()
                session.inflight[packet_id] = message
                self._writer.write(
                    encode_publish(Publish(message.topic, message.payload, 1, packet_id, message.dup))
                )
            await self._writer.drain()

    def _allocate_packet_id(self) -> int:
        for _ in range(65535):
            self._last_pid = self._last_pid % 65535 + 1
            if self._last_pid not in self._transient and (
                self._session is None or self._last_pid not in self._session.inflight
            ):
                return self._last_pid
        raise ProtocolViolation("no free packet id: the client is not acknowledging")
