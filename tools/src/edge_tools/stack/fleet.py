"""Many devices on one machine: Azurite, the simulator with `--devices N`, and a real loader per device.

Each device gets its own model root, its module identities from the simulator
(`<state>/devices/<id>/env/<module>.env`) and, on the first `inference_on` devices, a real inference
module on its own loopback port. Blob Storage is reached through a counting TCP proxy, so a benchmark
can say how many bytes storage served each device. A device can carry a fault: a loader that sees its
disk as full (a free-space floor above what the disk has) fails every download with `disk_full`.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from edge_tools.azurite import Azurite
from edge_tools.faultproxy import FaultProxy
from edge_tools.publish.connstr import HubConnection
from edge_tools.rollout.hub import FleetHub
from edge_tools.stack.network import free_port, pick_loopback_address
from edge_tools.stack.processes import ManagedProcess, ProcessFailed
from edge_tools.stack.stack import (
    DEFAULT_MANIFEST,
    MODULE_PACKAGES,
    inference_live,
    module_env,
    simulator_process,
    start_and_wait_ready,
)
from edge_tools.stack.supervised import Supervised

#: A free-space floor no test disk has: the loader refuses every download as `disk_full`.
DISK_FULL_FLOOR = 1 << 50


@dataclass(frozen=True)
class ProcessUsage:
    cpu_seconds: float
    rss_bytes: int


def process_usage(pid: int) -> ProcessUsage:
    """CPU time (user + system) and resident memory of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text(encoding="ascii").split()[1])
    return ProcessUsage(cpu_seconds=cpu, rss_bytes=rss_pages * os.sysconf("SC_PAGE_SIZE"))


class FleetStack(Supervised):
    """Context manager owning every process of a simulated fleet; leaving it stops them all."""

    def __init__(
        self,
        workdir: Path,
        devices: int,
        *,
        inference_on: int = 0,
        deployment_interval: float = 1.0,
        disk_full: frozenset[str] = frozenset(),
        manifest: Path = DEFAULT_MANIFEST,
        python: str = sys.executable,
        echo: TextIO | None = None,
        loader_env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.count = devices
        self.inference_on = inference_on
        self.deployment_interval = deployment_interval
        self.disk_full = disk_full
        self.manifest_path = manifest
        self.manifest: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
        self.python = python
        self.echo = echo
        self.loader_env = dict(loader_env or {})
        self.logs = workdir / "logs"
        self.state = workdir / "edgehub"
        self.azurite: Azurite | None = None
        self.proxy: FaultProxy | None = None
        self.simulator: ManagedProcess | None = None
        self.modules: dict[tuple[str, str], ManagedProcess] = {}
        self.device_ids: list[str] = []
        self.inference_urls: dict[str, str] = {}

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.azurite = Azurite(self.workdir / "azurite")
        self.azurite.start()
        self.proxy = FaultProxy(self.azurite.port)
        self.proxy.start()
        self._start_simulator()
        self.device_ids = (self.state / "devices.txt").read_text(encoding="utf-8").split()
        if len(self.device_ids) != self.count:
            raise RuntimeError(f"the simulator wrote {len(self.device_ids)} device ids, not {self.count}")
        unknown = self.disk_full - set(self.device_ids)
        if unknown:
            raise ValueError(f"disk_full names devices the fleet does not have: {sorted(unknown)}")
        for index, device in enumerate(self.device_ids):
            if index < self.inference_on:
                self._start_inference(device)
            self._start_module(device, "loader")
        self.wait_connected()
        dead = [process.name for process in self.children() if not process.running()]
        if dead:
            raise ProcessFailed(f"exited while the fleet started: {', '.join(dead)}; logs in {self.logs}")

    def _start_inference(self, device: str, attempts: int = 3) -> None:
        """Start a device's inference module and wait until it is live; a port taken between choosing
        it and binding it (loaders open connections all the while) is retried on another port."""
        for attempt in range(1, attempts + 1):
            process = self._start_module(device, "inference")
            try:
                process.wait_ready(
                    lambda: inference_live(self.inference_urls[device]), timeout=60, what="live"
                )
                return
            except ProcessFailed:
                process.stop()
                if attempt == attempts:
                    raise

    def wait_connected(self, timeout: float = 180.0) -> None:
        """Until every loader has reported once (each reports on start, after reading its twin)."""
        waiting = set(self.device_ids)

        def all_reported() -> bool:
            with self.hub() as hub:
                rows = hub.query("SELECT * FROM devices.modules WHERE moduleId='loader'")
                for twin in rows:
                    if "ModelUpdate" in ((twin.get("properties") or {}).get("reported") or {}):
                        waiting.discard(str(twin.get("deviceId")))
            return not waiting

        self.wait_for(f"{len(waiting)} loaders to connect", all_reported, timeout=timeout)

    def children(self) -> list[ManagedProcess]:
        return [*self.modules.values(), *([self.simulator] if self.simulator else [])]

    def _start_simulator(self) -> None:
        bind = pick_loopback_address()
        self.simulator = simulator_process(
            self.python,
            self.manifest_path,
            self.state,
            bind,
            free_port(bind),
            extra_args=[
                "--devices",
                str(self.count),
                "--deployment-interval",
                f"{self.deployment_interval:g}",
            ],
            logs=self.logs,
            echo=self.echo,
        )
        start_and_wait_ready(self.simulator, self.state, timeout=120)

    def model_root(self, device: str) -> Path:
        return self.workdir / "devices" / device / "models"

    def _start_module(self, device: str, module: str) -> ManagedProcess:
        assert self.azurite is not None
        root = self.model_root(device)
        root.mkdir(parents=True, exist_ok=True)
        port = free_port("127.0.0.1") if module == "inference" else 0
        env = module_env(
            module,
            env_file=self.state / "devices" / device / "env" / f"{module}.env",
            manifest=self.manifest,
            model_root=root,
            storage_ca_file=self.azurite.ca_file,
            inference_port=port,
            log_format="json",
        )
        if module == "loader":
            env["LOADER_MIN_FREE_BYTES"] = str(DISK_FULL_FLOOR if device in self.disk_full else 64 << 20)
            # Without an inference module nothing confirms serving: report ready at once.
            env["LOADER_SERVE_CONFIRM_TIMEOUT"] = "130" if device in self.inference_urls else "0"
            env.update(self.loader_env)
        else:
            self.inference_urls[device] = f"http://127.0.0.1:{port}"
        process = ManagedProcess(
            f"{device}-{module}",
            [self.python, "-m", MODULE_PACKAGES[module]],
            env=env,
            log_dir=self.logs,
            echo=self.echo,
        )
        self.modules[(device, module)] = process
        process.start()
        return process

    def serving(self, device: str) -> str | None:
        """The version a device's inference module serves (from its status endpoint), or None."""
        url = self.inference_urls.get(device)
        if url is None:
            return None
        try:
            response = httpx.get(f"{url}/model", timeout=2.0)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        version = response.json().get("version")
        return str(version) if version else None

    def stop_loader(self, device: str) -> None:
        """Take a device's loader offline (its twin stays; the hub sees it disconnected)."""
        process = self.modules.pop((device, "loader"), None)
        if process is not None:
            process.stop()

    def restart_loader(self, device: str, *, disk_full: bool) -> None:
        """(Re)start a device's loader with its disk seen as full (or no longer), as after a fault."""
        self.stop_loader(device)
        self.disk_full = self.disk_full | {device} if disk_full else self.disk_full - {device}
        self._start_module(device, "loader")

    def stop(self) -> None:
        for process in self.modules.values():
            process.stop()
        self.modules.clear()
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None

    # --- endpoints ---------------------------------------------------------------------------------
    @property
    def hub_connection_string(self) -> str:
        return (self.state / "service.connstr").read_text(encoding="utf-8").strip()

    @property
    def hub_ca_file(self) -> Path:
        return self.state / "ca.pem"

    def hub(self) -> FleetHub:
        context = ssl.create_default_context(cafile=str(self.hub_ca_file))
        return FleetHub(HubConnection.parse(self.hub_connection_string), verify=context)

    @property
    def storage_connection_string(self) -> str:
        """Azurite's, through the counting proxy: the URLs devices get are counted too."""
        if self.azurite is None or self.proxy is None:
            raise RuntimeError("the fleet is not started")
        return self.azurite.connection_string.replace(f":{self.azurite.port}/", f":{self.proxy.port}/")

    @property
    def storage_ca_file(self) -> Path:
        if self.azurite is None:
            raise RuntimeError("the fleet is not started")
        return self.azurite.ca_file

    def served_bytes(self) -> int:
        """Bytes Blob Storage has sent through the proxy so far (uploads' answers included)."""
        return self.proxy.downstream_bytes if self.proxy is not None else 0

    def simulator_usage(self) -> ProcessUsage:
        if self.simulator is None or self.simulator.pid is None:
            raise RuntimeError("the simulator is not running")
        return process_usage(self.simulator.pid)
