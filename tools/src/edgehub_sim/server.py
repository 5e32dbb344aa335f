"""The simulator's lifecycle: its own thread and event loop, listeners, and the files it writes.

The SDK's handler setters block the calling thread until SUBACK, so the simulator must never share the
test's event loop: `EdgeHubSimulator` runs everything on a private loop in a daemon thread.
"""

import asyncio
import hashlib
import logging
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from edge_shared.fsutil import atomic_write_bytes
from edgehub_sim.control import SimulatorControl
from edgehub_sim.deployments.engine import DEFAULT_INTERVAL_SECS, DeploymentEngine
from edgehub_sim.deployments.throttle import WriteThrottle
from edgehub_sim.http_server import HttpListener, bind_tcp, bind_unix
from edgehub_sim.hub import Hub
from edgehub_sim.identity import SERVICE_KEY_NAME, Identity, load_identity
from edgehub_sim.manifest import load_manifest
from edgehub_sim.methods import MethodResult
from edgehub_sim.mqtt.broker import MQTT_TLS_PORT, MqttListener
from edgehub_sim.records import ChangeFeed, RecordedMessage
from edgehub_sim.sas import make_token
from edgehub_sim.service_api import create_service_app
from edgehub_sim.store import Store
from edgehub_sim.tls import TlsMaterial, issue_server_material
from edgehub_sim.workload import create_shared_workload_app, create_workload_app, generation_id

logger = logging.getLogger(__name__)

DEFAULT_HUB_NAME = "edgehub-sim.azure-devices.net"
DEFAULT_DEVICE_ID = "edge-sim-device"
#: edgeHub serves module-to-module `invoke_method` on 443; the service API shares that listener.
DEFAULT_SERVICE_PORT = 443
WORKLOAD_API_VERSION = "2019-01-30"
#: IoT Edge throttles each module's workload socket to 10 simultaneous requests (one module cannot
#: starve the others); the simulator does the same per socket.
WORKLOAD_MAX_CONNECTIONS = 10
START_TIMEOUT_SECS = 30.0
STOP_TIMEOUT_SECS = 10.0
#: sun_path is 108 bytes on Linux; longer state dirs get their socket in a short temp dir.
_MAX_SOCKET_PATH = 100
_DEVICE_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")


class EdgeHubSimulator:
    """A running edgeHub + IoT Hub simulator (use as a context manager or call start/stop).

    With `devices` (a fleet) it hosts every listed Edge device, each with the manifest's modules, keys,
    twins, routes and env files (`DIR/devices.txt`, `DIR/devices/<id>/env/<module>.env`); without, one
    device `device_id` in the historical layout (`DIR/env/<module>.env`).
    """

    def __init__(
        self,
        manifest_path: Path,
        state_dir: Path,
        bind: str = "127.0.0.1",
        service_port: int = DEFAULT_SERVICE_PORT,
        *,
        mqtt_port: int = MQTT_TLS_PORT,
        workload_port: int | None = None,
        workload_socket_mode: int = 0o600,
        hub_name: str = DEFAULT_HUB_NAME,
        device_id: str = DEFAULT_DEVICE_ID,
        devices: Sequence[str] | None = None,
        deployment_interval: float = DEFAULT_INTERVAL_SECS,
        configuration_writes_per_minute: int | None = None,
    ) -> None:
        if devices is not None:
            validate_device_ids(devices)
            if workload_port is not None:
                raise ValueError("--workload-port serves one device's modules; a fleet uses unix sockets")
        if deployment_interval <= 0:
            raise ValueError("the deployment interval must be positive")
        #: IoT Hub throttles configuration writes (20 a minute per unit); None: never throttle.
        self.throttle = WriteThrottle(configuration_writes_per_minute)
        self.manifest_path = Path(manifest_path)
        self.state_dir = Path(state_dir).resolve()
        self.bind = bind
        self.service_port = service_port
        self.mqtt_port = mqtt_port
        #: When set, the workload API is (also) served over plain HTTP, module i of the manifest on
        #: bind:(port + i), and the env files name that instead of the module's unix socket.
        self.workload_port = workload_port
        #: Permissions of the per-module workload sockets: owner-only by default; `0o666` where each
        #: module runs as its own user (containers), as IoT Edge's per-module sockets are.
        self.workload_socket_mode = workload_socket_mode
        self._hub_name = hub_name
        self._device_id = device_id if devices is None else devices[0]
        #: The fleet's device ids, or None for the single-device layout.
        self.devices: tuple[str, ...] | None = None if devices is None else tuple(devices)
        self.deployment_interval = deployment_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: _Running | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start listening; returns once `DIR/ready` exists. Raises if start-up fails."""
        if self._loop is not None:
            raise RuntimeError("simulator already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_run_loop, args=(loop,), name="edgehub-sim", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._running = asyncio.run_coroutine_threadsafe(self._startup(), loop).result(START_TIMEOUT_SECS)
        except BaseException:
            self._halt_loop()
            raise

    def stop(self) -> None:
        """Stop listeners and connections, close the store, remove `DIR/ready`."""
        if self._loop is None:
            return
        if self._running is not None:
            running, self._running = self._running, None
            (self.state_dir / "ready").unlink(missing_ok=True)
            asyncio.run_coroutine_threadsafe(running.shutdown(), self._loop).result(STOP_TIMEOUT_SECS)
        self._halt_loop()

    def __enter__(self) -> "EdgeHubSimulator":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _halt_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None:
            asyncio.run_coroutine_threadsafe(_cancel_other_tasks(), loop).result(STOP_TIMEOUT_SECS)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(STOP_TIMEOUT_SECS)
            loop.close()

    async def _startup(self) -> "_Running":
        state_dir = self.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "ready").unlink(missing_ok=True)
        manifest = load_manifest(self.manifest_path)
        store = Store(state_dir / "state.db")
        running: _Running | None = None
        try:
            devices = [self._device_id] if self.devices is None else list(self.devices)
            identity = load_identity(
                store, self._hub_name, devices, list(manifest.modules), fleet=self.devices is not None
            )
            tls = issue_server_material(state_dir, self.bind)
            hub = Hub(identity, manifest, store, ChangeFeed())
            sockets = self._workload_sockets(identity)
            engine = DeploymentEngine(hub, self.deployment_interval)
            running = _Running(
                hub,
                engine,
                store,
                tls,
                sockets,
                self.workload_socket_mode,
                self.devices is not None,
                self.throttle,
            )
            await running.listen(self.bind, self.mqtt_port, self.service_port, self.workload_port)
        except BaseException:
            if running is not None:
                await running.shutdown()
            else:
                store.close()
            raise
        self._write_files(identity, running)
        atomic_write_bytes(state_dir / "ready", b"ready\n", mode=0o644)
        logger.info("edgeHub simulator ready on %s (state in %s)", self.bind, state_dir)
        return running

    def _workload_sockets(self, identity: Identity) -> dict[str, Path]:
        """One socket per module (client id -> path) in `DIR/workload/` (a fleet: `DIR/workload/<device>/`),
        or a short temp dir when that path is too long, in folders only the owner may enter unless the
        sockets are opened to others."""
        directory = self.state_dir / "workload"
        fleet = self.devices is not None
        relative = {
            client_id: Path(client_id if fleet else client_id.split("/", 1)[1]).with_suffix(".sock")
            for client_id in identity.keys
        }
        if any(len(str(directory / path)) > _MAX_SOCKET_PATH for path in relative.values()):
            digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
            directory = Path(tempfile.gettempdir()) / f"edgehub-sim-{digest}"
        mode = 0o755 if self.workload_socket_mode & 0o077 else 0o700
        for folder in {directory, *(directory / path.parent for path in relative.values())}:
            folder.mkdir(mode=mode, parents=True, exist_ok=True)
            folder.chmod(mode)  # an existing folder keeps its old mode otherwise
        return {client_id: directory / path for client_id, path in relative.items()}

    def _write_files(self, identity: Identity, running: "_Running") -> None:
        for client_id in identity.keys:
            device, module = identity.split_client_id(client_id)
            folder = (
                self.state_dir / "env"
                if self.devices is None
                else self.state_dir / "devices" / device / "env"
            )
            folder.mkdir(parents=True, exist_ok=True)
            lines = [f"{key}={value}" for key, value in self._env(module, device, running).items()]
            text = "\n".join(lines) + "\n"
            atomic_write_bytes(folder / f"{module}.env", text.encode(), mode=0o600)
        if self.devices is not None:
            listing = "".join(f"{device}\n" for device in self.devices)
            atomic_write_bytes(self.state_dir / "devices.txt", listing.encode(), mode=0o644)
        connstr = self._service_connection_string(identity)
        atomic_write_bytes(self.state_dir / "service.connstr", f"{connstr}\n".encode(), mode=0o600)

    def _env(self, module: str, device: str, running: "_Running") -> dict[str, str]:
        return {
            "IOTEDGE_IOTHUBHOSTNAME": self._hub_name,
            "IOTEDGE_DEVICEID": device,
            "IOTEDGE_MODULEID": module,
            "IOTEDGE_GATEWAYHOSTNAME": self.bind,
            "IOTEDGE_MODULEGENERATIONID": generation_id(module),
            "IOTEDGE_WORKLOADURI": (
                f"unix://{running.workload_sockets[f'{device}/{module}']}"
                if self.workload_port is None
                else f"http://{self.bind}:{self.workload_port + running.module_index(module)}"
            ),
            "IOTEDGE_APIVERSION": WORKLOAD_API_VERSION,
            "EdgeModuleCACertificateFile": str(self.state_dir / "ca.pem"),
        }

    # --- what clients need ------------------------------------------------------------------------

    def _require(self) -> "_Running":
        if self._running is None:
            raise RuntimeError("simulator is not running")
        return self._running

    @property
    def control(self) -> SimulatorControl:
        """Thread-safe control of the running simulator."""
        running = self._require()
        if self._loop is None:
            raise RuntimeError("simulator is not running")
        return SimulatorControl(self._loop, running.hub, running.engine)

    @property
    def device_id(self) -> str:
        """The simulated Edge device's id."""
        return self._device_id

    @property
    def hub_name(self) -> str:
        """The IoT Hub host name modules put in their username and `sr`."""
        return self._hub_name

    @property
    def ca_pem(self) -> str:
        """The CA certificate (PEM) that signs the server certificate."""
        return self._require().tls.ca_pem

    @property
    def ca_path(self) -> Path:
        """`DIR/ca.pem`."""
        return self._require().tls.ca_path

    @property
    def service_host(self) -> str:
        """`host:port` of the HTTPS service API."""
        return f"{self.bind}:{self.service_port}"

    @property
    def service_connection_string(self) -> str:
        """IoT Hub service connection string for the service API (contains the service key)."""
        return self._service_connection_string(self._require().hub.identity)

    def _service_connection_string(self, identity: Identity) -> str:
        return (
            f"HostName={self.service_host};SharedAccessKeyName={SERVICE_KEY_NAME};"
            f"SharedAccessKey={identity.service_key}"
        )

    def service_token(self, ttl_secs: int = 3600) -> str:
        """A service SAS token for the service API's Authorization header."""
        key = self._require().hub.identity.service_key
        return make_token(self.service_host, key, ttl_secs, key_name=SERVICE_KEY_NAME)

    def env_for(self, module: str, device: str | None = None) -> dict[str, str]:
        """Environment variables for `create_from_edge_environment()` (also in the env files)."""
        running = self._require()
        running.hub.identity.key(module, device)
        return self._env(module, device or self._device_id, running)

    def module_key(self, module: str, device: str | None = None) -> str:
        """A module's primary key (for connection-string clients)."""
        return self._require().hub.identity.key(module, device)

    def connection_string_for(self, module: str, device: str | None = None) -> str:
        """A module connection string with `GatewayHostName` (use with `server_verification_cert`)."""
        return (
            f"HostName={self._hub_name};DeviceId={device or self._device_id};ModuleId={module};"
            f"SharedAccessKey={self.module_key(module, device)};GatewayHostName={self.bind}"
        )

    # --- control shortcuts ----------------------------------------------------------------------

    def set_desired(self, module: str, patch: dict[str, Any], device: str | None = None) -> int:
        """See `SimulatorControl.set_desired`."""
        return self.control.set_desired(module, patch, device)

    def reported(self, module: str, device: str | None = None) -> dict[str, Any]:
        """See `SimulatorControl.reported`."""
        return self.control.reported(module, device)

    def twin(self, module: str, device: str | None = None) -> dict[str, Any]:
        """See `SimulatorControl.twin`."""
        return self.control.twin(module, device)

    def invoke_method(
        self,
        module: str,
        name: str,
        payload: Any = None,
        timeout: float = 30.0,
        connect_timeout: float = 0.0,
        device: str | None = None,
    ) -> MethodResult:
        """See `SimulatorControl.invoke_method`."""
        return self.control.invoke_method(module, name, payload, timeout, connect_timeout, device)

    def upstream_messages(self) -> list[RecordedMessage]:
        """See `SimulatorControl.upstream_messages`."""
        return self.control.upstream_messages()

    def routed_messages(self) -> list[RecordedMessage]:
        """See `SimulatorControl.routed_messages`."""
        return self.control.routed_messages()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """See `SimulatorControl.wait_for`."""
        self.control.wait_for(predicate, timeout)


class _Running:
    """The resources of a started simulator (owned by its loop)."""

    def __init__(
        self,
        hub: Hub,
        engine: DeploymentEngine,
        store: Store,
        tls: TlsMaterial,
        workload_sockets: dict[str, Path],
        socket_mode: int,
        fleet: bool,
        throttle: WriteThrottle,
    ) -> None:
        self.hub = hub
        self.engine = engine
        self.throttle = throttle
        self._fleet = fleet
        self.store = store
        self.tls = tls
        self.workload_sockets = workload_sockets
        self._socket_mode = socket_mode
        self._mqtt: MqttListener | None = None
        self._http: list[HttpListener] = []

    async def listen(self, bind: str, mqtt_port: int, service_port: int, workload_port: int | None) -> None:
        identity = self.hub.identity
        self._mqtt = MqttListener(self.hub, self.tls.server_context())
        await self._mqtt.start(bind, mqtt_port)
        if self._fleet:
            await self._listen_fleet_workload()
        else:
            await self._listen_workload(bind, workload_port)
        hosts = [f"{bind}:{service_port}", bind, identity.hub_name]
        service = HttpListener(
            create_service_app(self.hub, hosts, self.engine.trigger, self.throttle),
            bind_tcp(bind, service_port),
            self.tls.cert_path,
            self.tls.key_path,
        )
        self._http.append(service)
        await service.start()
        self.engine.start()

    async def _listen_workload(self, bind: str, workload_port: int | None) -> None:
        """One listener per module socket (and port), each limited as IoT Edge limits a module's socket."""
        identity = self.hub.identity
        for client_id, path in self.workload_sockets.items():
            _, module = identity.split_client_id(client_id)
            app = create_workload_app(module, identity.keys[client_id], self.tls.ca_pem)
            sockets = [bind_unix(path, self._socket_mode)]
            if workload_port is not None:
                sockets.append(bind_tcp(bind, workload_port + self.module_index(module)))
            for sock in sockets:
                listener = HttpListener(app, sock, max_connections=WORKLOAD_MAX_CONNECTIONS)
                self._http.append(listener)
                await listener.start()

    async def _listen_fleet_workload(self) -> None:
        """Every module socket of the fleet behind one listener: a uvicorn server per socket would wake
        ten times a second each, hundreds of them for an idle fleet."""
        identity = self.hub.identity
        sockets = [bind_unix(path, self._socket_mode) for path in self.workload_sockets.values()]
        by_socket = {
            str(path): (identity.split_client_id(client_id)[1], identity.keys[client_id])
            for client_id, path in self.workload_sockets.items()
        }
        listener = HttpListener(create_shared_workload_app(by_socket, self.tls.ca_pem), sockets)
        self._http.append(listener)
        await listener.start()

    async def shutdown(self) -> None:
        await self.engine.stop()
        if self._mqtt is not None:
            await self._mqtt.stop()
        for listener in self._http:
            await listener.stop()
        self.store.close()
        for path in self.workload_sockets.values():
            path.unlink(missing_ok=True)

    def module_index(self, module: str) -> int:
        """The module's place in the manifest (its TCP workload port is the base port plus this)."""
        return self.hub.identity.modules.index(module)


async def _cancel_other_tasks() -> None:
    """Cancel whatever is still running on the loop (nothing should be) before it stops."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def validate_device_ids(devices: Sequence[str]) -> None:
    """IoT Hub's device id rule (up to 128 ASCII letters, digits and `-.%_*?!(),:=@$'`), at least one
    device, no duplicates: ValueError naming the first offender."""
    if not devices:
        raise ValueError("a fleet needs at least one device")
    seen: set[str] = set()
    for device in devices:
        if _DEVICE_ID.fullmatch(device) is None:
            raise ValueError(f"device id {device!r} is not a valid IoT Hub device id")
        if device in seen:
            raise ValueError(f"device id {device!r} is listed twice")
        seen.add(device)


def numbered_devices(count: int) -> list[str]:
    """`dev-001` ... (zero-padded to at least three digits)."""
    if count < 1:
        raise ValueError("--devices must be at least 1")
    width = max(3, len(str(count)))
    return [f"dev-{index:0{width}d}" for index in range(1, count + 1)]


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()
