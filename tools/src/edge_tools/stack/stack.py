"""Start Azurite, the edgeHub simulator and both modules, wired exactly as `deployment.json` says.

Each module gets the `IOTEDGE_*` environment the simulator wrote for it, the `env` of its entry in the
manifest, and only the overrides a laptop needs: the model root (a folder instead of the `/models`
volume), Azurite's CA for the loader, and a loopback port for the inference API.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from edge_tools.azurite import Azurite
from edge_tools.publish.connstr import HubConnection
from edge_tools.publish.hub import HubServiceClient
from edge_tools.stack.network import free_port, pick_loopback_address
from edge_tools.stack.processes import ManagedProcess, RunAs
from edge_tools.stack.supervised import Supervised

logger = logging.getLogger(__name__)
#: The local stack's storage is on loopback: never reached through a proxy the environment may name.
LOOPBACK_NO_PROXY = "localhost,127.0.0.0/8,::1"
REPO_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_MANIFEST = REPO_ROOT / "deployment.json"


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def manifest_env(manifest: dict[str, Any], module: str) -> dict[str, str]:
    """`env` of a module in `$edgeAgent`'s desired properties, as plain strings."""
    modules = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
    return {key: str(item["value"]) for key, item in modules[module].get("env", {}).items()}


#: The Python package each module runs as (`python -m <package>`).
MODULE_PACKAGES = {"loader": "loader_module", "inference": "inference_module"}


def base_env() -> dict[str, str]:
    """This process's environment without any module's settings, unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOTEDGE_", "LOADER_", "INFERENCE_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def module_env(
    module: str,
    *,
    env_file: Path,
    manifest: dict[str, Any],
    model_root: Path,
    storage_ca_file: Path,
    inference_port: int,
    log_format: str,
) -> dict[str, str]:
    """A module's environment: the `IOTEDGE_*` file the simulator wrote, the manifest's `env`, and the
    overrides a laptop needs (a folder as the model volume, Azurite's CA, a loopback port)."""
    env = base_env()
    env.update(read_env_file(env_file))
    env.update(manifest_env(manifest, module))
    if module == "loader":
        env["LOADER_MODEL_ROOT"] = str(model_root)
        env["LOADER_CA_FILE"] = str(storage_ca_file)
        env["LOADER_LOG_FORMAT"] = log_format
        env.setdefault("LOADER_MIN_FREE_BYTES", str(64 * 1024 * 1024))
        env["LOADER_NO_PROXY"] = LOOPBACK_NO_PROXY
    elif module == "inference":
        env["INFERENCE_MODEL_ROOT"] = str(model_root)
        env["INFERENCE_HOST"] = "127.0.0.1"
        env["INFERENCE_PORT"] = str(inference_port)
        env["INFERENCE_LOG_FORMAT"] = log_format
    return env


def simulator_process(
    python: str,
    manifest: Path,
    state: Path,
    bind: str,
    service_port: int,
    *,
    extra_args: list[str],
    logs: Path,
    echo: TextIO | None,
) -> ManagedProcess:
    """`python -m edgehub_sim serve` on `bind`, not started: the caller registers it first, so that a
    start that fails is still stopped (its output pipe closed) with the rest of the stack."""
    (state / "ready").unlink(missing_ok=True)
    argv = [python, "-m", "edgehub_sim", "serve", "--manifest", str(manifest)]
    argv += ["--state-dir", str(state), "--bind", bind, "--service-port", str(service_port), *extra_args]
    return ManagedProcess("edgehub", argv, env=base_env(), log_dir=logs, echo=echo)


def start_and_wait_ready(simulator: ManagedProcess, state: Path, *, timeout: float) -> None:
    """Start a `simulator_process` and wait for the `ready` file it writes once it serves."""
    simulator.start()
    simulator.wait_ready((state / "ready").exists, timeout=timeout, what="ready")


def inference_live(url: str) -> bool:
    """Whether the inference module at `url` answers its liveness probe (never raises)."""
    try:
        return httpx.get(f"{url}/health/live", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class StackEndpoints:
    inference_url: str
    hub_connection_string: str
    hub_ca_file: Path
    storage_connection_string: str
    storage_ca_file: Path
    device_id: str
    model_root: Path
    connstr_file: Path


class LocalStack(Supervised):
    """Context manager owning every process; leaving it (normally, on error or Ctrl-C) stops them all."""

    def __init__(
        self,
        workdir: Path,
        *,
        manifest: Path = DEFAULT_MANIFEST,
        echo: TextIO | None = None,
        python: str = sys.executable,
        log_format: str = "json",
        run_as: Mapping[str, RunAs] | None = None,
    ) -> None:
        """`run_as` starts modules ("loader", "inference") as other users, as their images do: the model
        root is then given to the loader's user (as the loader image owns `/models`), and the inference
        module reads it as a stranger."""
        self.workdir = workdir
        self.manifest_path = manifest
        self.manifest: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
        self.echo = echo
        self.python = python
        self.log_format = log_format
        self.run_as = dict(run_as or {})
        self.logs = workdir / "logs"
        self.azurite: Azurite | None = None
        self.processes: dict[str, ManagedProcess] = {}
        self._endpoints: StackEndpoints | None = None
        self._simulator_address: tuple[str, int] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.azurite = Azurite(self.workdir / "azurite")
        self.azurite.start()
        state = self.workdir / "edgehub"
        bind = pick_loopback_address()
        service_port = free_port(bind)
        self._simulator_address = (bind, service_port)
        self._start_simulator(state, bind, service_port)
        connstr_file = state / "service.connstr"
        hub_connstr = connstr_file.read_text(encoding="utf-8").strip()
        model_root = self.workdir / "models"
        model_root.mkdir(parents=True, exist_ok=True)
        if loader_user := self.run_as.get("loader"):
            os.chown(model_root, loader_user.uid, loader_user.gid)
        inference_port = free_port("127.0.0.1")
        loader_env = read_env_file(state / "env" / "loader.env")
        self._endpoints = StackEndpoints(
            inference_url=f"http://127.0.0.1:{inference_port}",
            hub_connection_string=hub_connstr,
            hub_ca_file=state / "ca.pem",
            storage_connection_string=self.azurite.connection_string,
            storage_ca_file=self.azurite.ca_file,
            device_id=loader_env["IOTEDGE_DEVICEID"],
            model_root=model_root,
            connstr_file=connstr_file,
        )
        self.start_module("loader")
        self.start_module("inference")

    def _start_simulator(self, state: Path, bind: str, service_port: int) -> None:
        # Modules run as other users (as their images run them) must reach their sockets.
        extra = ["--workload-socket-mode", "666"] if self.run_as else []
        simulator = simulator_process(
            self.python,
            self.manifest_path,
            state,
            bind,
            service_port,
            extra_args=extra,
            logs=self.logs,
            echo=self.echo,
        )
        self.processes["edgehub"] = simulator
        start_and_wait_ready(simulator, state, timeout=60)

    def module_env(self, module: str) -> dict[str, str]:
        endpoints = self.endpoints
        return module_env(
            module,
            env_file=self.workdir / "edgehub" / "env" / f"{module}.env",
            manifest=self.manifest,
            model_root=endpoints.model_root,
            storage_ca_file=endpoints.storage_ca_file,
            inference_port=int(endpoints.inference_url.rsplit(":", 1)[1]),
            log_format=self.log_format,
        )

    def start_module(self, module: str) -> ManagedProcess:
        package = MODULE_PACKAGES[module]
        run_as = self.run_as.get(module)
        python = run_as.python if run_as is not None and run_as.python else self.python
        process = ManagedProcess(
            module,
            [python, "-m", package],
            env=self.module_env(module),
            log_dir=self.logs,
            echo=self.echo,
            run_as=run_as,
        )
        self.processes[module] = process
        process.start()
        if module == "inference":
            process.wait_ready(self._inference_live, timeout=60, what="live")
        else:
            process.wait_ready(
                lambda: self._module_connected(module), timeout=60, what="connected to edgeHub"
            )
        return process

    def restart_module(self, module: str, *, kill: bool = False) -> ManagedProcess:
        old = self.processes[module]
        if kill:
            old.kill()
        old.stop()
        return self.start_module(module)

    def restart_simulator(self, *, kill: bool = True) -> ManagedProcess:
        """Stop the simulator (SIGKILL by default, as a crash would) and start it again on the same address,
        ports and state dir, so the modules' env, CA and the service connection string stay valid."""
        if self._simulator_address is None:
            raise RuntimeError("the stack is not started")
        old = self.processes["edgehub"]
        if kill:
            old.kill()
        old.stop()
        bind, service_port = self._simulator_address
        self._start_simulator(self.workdir / "edgehub", bind, service_port)
        return self.processes["edgehub"]

    def stop(self) -> None:
        for name in ("inference", "loader", "edgehub"):
            process = self.processes.pop(name, None)
            if process is not None:
                process.stop()
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None

    # --- queries -----------------------------------------------------------------------------------
    @property
    def endpoints(self) -> StackEndpoints:
        if self._endpoints is None:
            raise RuntimeError("the stack is not started")
        return self._endpoints

    def hub(self) -> HubServiceClient:
        endpoints = self.endpoints
        connection = HubConnection.parse(endpoints.hub_connection_string)
        context = ssl.create_default_context(cafile=str(endpoints.hub_ca_file))
        return HubServiceClient(connection, verify=context)

    def reported(self, module: str) -> dict[str, Any]:
        with self.hub() as hub:
            twin = hub.get_module_twin(self.endpoints.device_id, module)
        reported: dict[str, Any] = twin.get("properties", {}).get("reported", {})
        return reported

    def _inference_live(self) -> bool:
        return inference_live(self.endpoints.inference_url)

    def _module_connected(self, module: str) -> bool:
        # The simulator's service API answers for a module's twin once its identity exists; a module is
        # "up" when it has reported at least once (both modules report on start).
        try:
            return bool(self.reported(module))
        except Exception:  # the hub may still be starting; the caller's timeout bounds this
            return False

    def children(self) -> list[ManagedProcess]:
        return list(self.processes.values())
