"""The inference module as its own process (`python -m inference_module`, standalone) on a model root.

Used by the serving, swap and cold-start sections; the memory readings come from /proc of that process.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from edge_shared.repository import ModelRepository
from edge_tools.fixtures import FixtureCatalog, install_fixture_model
from edge_tools.procs import stop_process

READY_TIMEOUT = 60.0


def install_fixture(root: Path, catalog: FixtureCatalog, model_id: str, *, current: bool = True) -> Path:
    """Install a fixture model as the loader would (files, manifest, optionally `current`); its folder."""
    manifest = install_fixture_model(root, catalog, model_id, make_current=current)
    return ModelRepository(root).version_dir(manifest.version)


def install_model_files(root: Path, catalog: FixtureCatalog, model_id: str) -> tuple[Path, Path | None]:
    """Install a fixture model as `current` under `root`; its model file and label file (None: none)."""
    fixture = catalog.model(model_id)
    directory = install_fixture(root, catalog, model_id)
    labels = None if fixture.labels_file is None else directory / Path(fixture.labels_file).name
    return directory / Path(fixture.model_file).name, labels


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_status(port: int, path: str) -> int:
    """Status of one GET on loopback; 0 when nothing answers yet."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def wait_for_status(process: subprocess.Popen[bytes], port: int, path: str, what: str) -> float:
    """Poll `path` until 200 (bounded); the seconds it took. Raises if the process exits first."""
    started = time.perf_counter()
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if get_status(port, path) == 200:
            return time.perf_counter() - started
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before {path} answered 200")
        time.sleep(0.005)
    raise RuntimeError(f"{what}: {path} did not answer 200 within {READY_TIMEOUT:.0f} s")


def status_kib(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM`-style field of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class InferenceProcess:
    """`python -m inference_module` on `root`, no edgeHub, on a free loopback port; stopped on exit."""

    def __init__(
        self,
        root: Path,
        log: Path,
        *,
        access_log: bool = True,
        env: Mapping[str, str] | None = None,
        wait_for: str = "/health/ready",
    ) -> None:
        self.root, self.log, self.access_log = root, log, access_log
        self.extra_env, self.wait_for = dict(env or {}), wait_for
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_seconds = float("nan")
        """Seconds from spawning the process to the first 200 of `wait_for` (`/health/ready`)."""

    def __enter__(self) -> InferenceProcess:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")},
            "INFERENCE_MODEL_ROOT": str(self.root),
            "INFERENCE_PORT": str(self.port),
            "INFERENCE_HOST": "127.0.0.1",
            "INFERENCE_EDGEHUB": "false",
            "INFERENCE_ACCESS_LOG": "true" if self.access_log else "false",
            **self.extra_env,
        }
        started = time.perf_counter()
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "inference_module"], env=env, stdout=sink, stderr=sink
            )
        try:
            wait_for_status(self.process, self.port, self.wait_for, "the inference process")
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.perf_counter() - started
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the inference process is not running")
        return self.process.pid

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process, 30)
        self.process = None
