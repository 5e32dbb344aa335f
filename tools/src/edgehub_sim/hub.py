"""The simulated edgeHub: sessions, twins, routing, store-and-forward and methods.

Transport-free: MQTT connections (`mqtt.connection`) and the HTTPS APIs call into it. Everything here
runs on the simulator's event loop, except the thread-safe reads of twins and message records.
"""

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import quote

from edgehub_sim.deployments.configurations import Configurations
from edgehub_sim.device_twins import DeviceTwins, twin_etag
from edgehub_sim.errors import AuthError, MethodError, UnknownModule
from edgehub_sim.identity import Identity
from edgehub_sim.manifest import DeploymentManifest
from edgehub_sim.methods import MethodResult, PendingMethods
from edgehub_sim.mqtt.codec import Connect
from edgehub_sim.mqtt.session import QueuedMessage, Session
from edgehub_sim.properties import decode_properties, encode_input_properties
from edgehub_sim.records import ChangeFeed, MessageLog, RecordedMessage
from edgehub_sim.routing.message import RoutableMessage
from edgehub_sim.sas import verify_token
from edgehub_sim.store import LayerValue, Store
from edgehub_sim.twins import DesiredChange, TwinRegistry

logger = logging.getLogger(__name__)


class Peer(Protocol):
    """What the hub needs of a connected module."""

    def send_transient(self, topic: str, payload: bytes) -> None:
        """Publish a QoS-1 message that is not queued (twin/method traffic)."""

    async def close(self) -> None:
        """Drop the connection and wait until it has detached."""


class Hub:
    """State and behaviour of the simulated IoT Hub and the edgeHub of each of its Edge devices.

    Module-level calls take an optional `device` (None: the default device, the only one of a
    single-device simulator); MQTT sessions, twins and queues are keyed by client id `{device}/{module}`.
    """

    def __init__(
        self, identity: Identity, manifest: DeploymentManifest, store: Store, feed: ChangeFeed
    ) -> None:
        self.identity = identity
        self.manifest = manifest
        self.feed = feed
        self.log = MessageLog(feed)
        self.methods = PendingMethods()
        self._store = store
        if len(identity.devices) == 1:  # a state dir written before fleets: keep its twins
            store.migrate_single_device_twins(identity.client_id)
        self.twins = TwinRegistry(
            store,
            {
                f"{device}/{name}": spec.desired
                for device in identity.devices
                for name, spec in manifest.modules.items()
            },
        )
        self.device_twins = DeviceTwins(store, identity.devices)
        self.configurations = Configurations(store)
        self._sessions: dict[str, Session] = {
            client_id: Session(client_id, filters, persisted=True)
            for client_id, filters in store.load_sessions().items()
        }
        for stored in store.load_queue():
            self.session(stored.client_id).push(
                QueuedMessage(stored.seq, stored.priority, stored.expires_at, stored.topic, stored.payload)
            )
        self._peers: dict[str, Peer] = {}
        self._connects: dict[str, int] = {}
        #: Set (and replaced) whenever a connection or subscription changes: method calls with a
        #: connect timeout wait on it for their module to start listening.
        self._sessions_changed = asyncio.Event()
        self._awaiting_listener: dict[str, int] = {}

    # --- sessions -------------------------------------------------------------------------------

    def authenticate(self, connect: Connect) -> tuple[str, str]:
        """The (device, module) a CONNECT authenticates, or AuthError."""
        try:
            device, module = self.identity.split_client_id(connect.client_id)
        except UnknownModule:
            raise AuthError(f"unknown client id {connect.client_id!r}") from None
        prefix = f"{self.identity.hub_name}/{device}/{module}/"
        if connect.username is None or not connect.username.startswith(prefix):
            raise AuthError("username does not name this hub, device and module")
        if connect.password is None:
            raise AuthError("no SAS token in CONNECT")
        try:
            token = connect.password.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AuthError("password is not UTF-8") from exc
        verify_token(token, self.identity.key(module, device), self.identity.module_resource(module, device))
        return device, module

    def session(self, client_id: str) -> Session:
        """The session of a client id, created (not yet persisted) on first use."""
        session = self._sessions.get(client_id)
        if session is None:
            session = Session(client_id, set(), persisted=False)
            self._sessions[client_id] = session
        return session

    async def attach(self, peer: Peer, client_id: str, clean_session: bool) -> tuple[Session, bool]:
        """Make `peer` the connection of `client_id` (closing any older one): (session, present)."""
        old = self._peers.get(client_id)
        if old is not None:
            logger.info("client %s connected again: closing its previous connection", client_id)
            await old.close()
        session = self.session(client_id)
        present = session.persisted and not clean_session
        if clean_session and session.subscriptions:
            session.subscriptions.clear()
            self._store.set_subscriptions(client_id, set())
        if not session.persisted:
            self._store.save_session(client_id)
            session.persisted = True
        self._peers[client_id] = peer
        self._connects[client_id] = self._connects.get(client_id, 0) + 1
        self._signal_sessions_changed()
        self.feed.bump()
        return session, present

    def detach(self, peer: Peer, session: Session) -> None:
        """Forget a closed connection; its in-flight messages go back to the queue."""
        if self._peers.get(session.client_id) is peer:
            del self._peers[session.client_id]
            session.requeue_inflight()
            self._signal_sessions_changed()
            self.feed.bump()

    async def disconnect(self, module: str, device: str | None = None) -> bool:
        """Drop a module's connection from the server side (tests of reconnect behaviour)."""
        peer = self._peers.get(self.identity.client_id(module, device))
        if peer is None:
            return False
        await peer.close()
        return True

    async def close_all(self) -> None:
        """Drop every connection (shutdown)."""
        for peer in list(self._peers.values()):
            await peer.close()

    def connect_count(self, module: str, device: str | None = None) -> int:
        """Accepted CONNECTs of a module since start (reconnects and SAS renewals show here)."""
        return self._connects.get(self.identity.client_id(module, device), 0)

    def connected(self, module: str, device: str | None = None) -> bool:
        """Is the module connected now?"""
        return self.identity.client_id(module, device) in self._peers

    def set_subscriptions(self, session: Session, filters: set[str]) -> None:
        """Persist a session's new subscription set and wake its sender (flush on SUBSCRIBE)."""
        session.subscriptions = filters
        self._store.set_subscriptions(session.client_id, filters)
        session.wake.set()
        self._signal_sessions_changed()
        self.feed.bump()

    def acknowledge(self, session: Session, packet_id: int) -> bool:
        """A PUBACK for a queued message: it is delivered. False if the id is not in flight."""
        message = session.inflight.pop(packet_id, None)
        if message is None:
            return False
        self._store.delete(message.seq)
        session.wake.set()
        self.feed.bump()
        return True

    def drop_expired(self, expired: list[QueuedMessage]) -> None:
        """Forget queued messages whose TTL passed before delivery."""
        for message in expired:
            logger.warning("dropping expired message %d for %s", message.seq, message.topic)
            self._store.delete(message.seq)

    def queued(self, module: str, device: str | None = None) -> int:
        """Messages waiting for a module's PUBACK."""
        session = self._sessions.get(self.identity.client_id(module, device))
        return 0 if session is None else session.queued_count()

    # --- messages -------------------------------------------------------------------------------

    def route(self, module: str, properties: str, body: bytes, device: str | None = None) -> None:
        """Route a module's telemetry/output message per the manifest (within its own device)."""
        system, custom = decode_properties(properties)
        self._route(
            RoutableMessage(
                device_id=self.identity.require_device(device),
                module_id=module,
                output=system.get("$.on"),
                body=body,
                system_properties=system,
                app_properties=custom,
            )
        )

    def _notify_twin_change(self, module: str, patch: Any, version: int, device: str) -> None:
        """edgeHub's twin change notification for a reported patch (source `/twinChangeNotifications`)."""
        body = {"version": version, "properties": {"reported": {**patch, "$version": version}}}
        self._route(
            RoutableMessage(
                device_id=device,
                module_id=module,
                output=None,
                body=json.dumps(body).encode("utf-8"),
                system_properties={"$.ct": "application/json", "$.ce": "utf-8"},
                app_properties={
                    "iothub-message-schema": "twinChangeNotification",
                    "opType": "updateTwin",
                },
                twin_change_notification=True,
            )
        )

    def _route(self, message: RoutableMessage) -> None:
        module = message.module_id
        body = message.body
        system, custom = dict(message.system_properties), dict(message.app_properties)
        deliveries = self.manifest.routes.deliveries(message)
        if not deliveries:
            logger.info("no route matches %s; message dropped", message.source)
        now = time.time()
        for delivery in deliveries:
            sink = delivery.sink
            record = RecordedMessage(
                seq=self.log.next_seq(),
                received_at=now,
                sink=sink.kind,
                route=delivery.route_name,
                source_module=module,
                output=message.output,
                body=body,
                system_properties=dict(system),
                app_properties=dict(custom),
                target_module=sink.module,
                target_input=sink.input,
            )
            if sink.kind == "module" and sink.module is not None and sink.input is not None:
                props = encode_input_properties(message.forwarded_system_properties(), custom)
                topic = (
                    f"devices/{message.device_id}/modules/{sink.module}"
                    f"/inputs/{quote(sink.input, safe='')}/{props}"
                )
                client_id = self.identity.client_id(sink.module, message.device_id)
                self._enqueue(client_id, delivery.priority, now + delivery.ttl_secs, topic, body)
            self.log.add(record)

    def _enqueue(self, client_id: str, priority: int, expires_at: float, topic: str, payload: bytes) -> None:
        seq = self._store.enqueue(client_id, priority, expires_at, topic, payload)
        self.session(client_id).push(QueuedMessage(seq, priority, expires_at, topic, payload))

    # --- twins ----------------------------------------------------------------------------------

    def twin_sections(self, module: str, device: str | None = None) -> dict[str, Any]:
        """The twin as the MQTT GET reply carries it: both sections with `$version`."""
        twin = self.twins.get(self.identity.client_id(module, device))
        return {
            "desired": {**twin.desired, "$version": twin.desired_version},
            "reported": {**twin.reported, "$version": twin.reported_version},
        }

    def service_twin(self, module: str, device: str | None = None) -> dict[str, Any]:
        """The module twin as IoT Hub's service API returns it."""
        device = self.identity.require_device(device)
        twin = self.twins.get(self.identity.client_id(module, device))
        version = twin.desired_version + twin.reported_version
        return {
            "deviceId": device,
            "moduleId": module,
            "etag": twin_etag(version),
            "version": version,
            "status": "enabled",
            "connectionState": "Connected" if self.connected(module, device) else "Disconnected",
            "properties": self.twin_sections(module, device),
        }

    def device_twin(self, device: str) -> dict[str, Any]:
        """The device twin as IoT Hub's service API returns it (target conditions evaluate this)."""
        twin = self.device_twins.get(device)
        connected = any(self.connected(module, device) for module in self.identity.modules)
        return {
            "deviceId": device,
            "etag": twin_etag(twin.version),
            "version": twin.version,
            "status": "enabled",
            "connectionState": "Connected" if connected else "Disconnected",
            "capabilities": {"iotEdge": True},
            "tags": twin.tags,
            "properties": {
                "desired": {**twin.desired, "$version": twin.desired_version},
                "reported": {"$version": 1},
            },
        }

    def module_twins(self) -> list[dict[str, Any]]:
        """Every module twin document, device by device (for queries and metrics)."""
        return [
            self.service_twin(module, device)
            for device in self.identity.devices
            for module in self.identity.modules
        ]

    def patch_reported(self, module: str, patch: Any, device: str | None = None) -> int:
        """Merge a module's reported patch; returns the new `$version`."""
        device = self.identity.require_device(device)
        version = self.twins.patch_reported(self.identity.client_id(module, device), patch)
        self._notify_twin_change(module, patch, version, device)
        self.feed.bump()
        return version

    def set_desired(self, module: str, patch: Any, device: str | None = None) -> int:
        """Merge a desired patch and push the change, with `$version`, to the module if it listens."""
        client_id = self.identity.client_id(module, device)
        change = self.twins.update_desired(client_id, patch)
        self._push_desired(client_id, change)
        return change.version

    def apply_layers(self, module: str, device: str, layers: Sequence[LayerValue]) -> bool:
        """Set what layered deployments contribute to a module twin; push what changed. True if it did."""
        client_id = self.identity.client_id(module, device)
        change = self.twins.set_layers(client_id, layers)
        if change is None:
            return False
        self._push_desired(client_id, change)
        return True

    def _push_desired(self, client_id: str, change: DesiredChange) -> None:
        peer = self._peers.get(client_id)
        topic = f"$iothub/twin/PATCH/properties/desired/?$version={change.version}"
        if peer is not None and self.session(client_id).subscribed(topic):
            body = {**change.patch, "$version": change.version}
            peer.send_transient(topic, json.dumps(body).encode("utf-8"))
        self.feed.bump()

    # --- methods --------------------------------------------------------------------------------

    async def invoke_method(
        self,
        module: str,
        name: str,
        payload: Any,
        timeout_secs: float,
        connect_timeout_secs: float = 0.0,
        device: str | None = None,
    ) -> MethodResult:
        """Call a direct method on a module.

        404 if it is not listening (after waiting up to `connect_timeout_secs` for it to connect and
        subscribe, as IoT Hub's connectTimeoutInSeconds does), 504 if it does not answer in time.
        """
        client_id = self.identity.client_id(module, device)
        if client_id not in self.identity.keys:
            raise UnknownModule(f"no module {module!r} in the manifest")
        peer = await self._listening_peer(client_id, connect_timeout_secs)
        rid, future = self.methods.open()
        try:
            peer.send_transient(
                f"$iothub/methods/POST/{quote(name, safe='')}/?$rid={rid}",
                json.dumps(payload).encode("utf-8"),
            )
            return await asyncio.wait_for(future, timeout_secs)
        except TimeoutError:
            raise MethodError(504, f"module {module!r} did not answer {name!r} in time") from None
        finally:
            self.methods.close(rid)

    async def _listening_peer(self, client_id: str, connect_timeout_secs: float) -> Peer:
        self._awaiting_listener[client_id] = self._awaiting_listener.get(client_id, 0) + 1
        self.feed.bump()
        try:
            async with asyncio.timeout(connect_timeout_secs):
                while True:
                    peer = self._peers.get(client_id)
                    if peer is not None and self.session(client_id).subscribed("$iothub/methods/POST/m/"):
                        return peer
                    if connect_timeout_secs <= 0:
                        break
                    await self._sessions_changed.wait()
        except TimeoutError:
            pass
        finally:
            self._awaiting_listener[client_id] -= 1
            self.feed.bump()
        raise MethodError(404, f"module {client_id!r} is not connected or not listening")

    def methods_awaiting(self, module: str, device: str | None = None) -> int:
        """Method calls currently waiting for the module to connect and listen."""
        return self._awaiting_listener.get(self.identity.client_id(module, device), 0)

    def _signal_sessions_changed(self) -> None:
        self._sessions_changed.set()
        self._sessions_changed = asyncio.Event()
