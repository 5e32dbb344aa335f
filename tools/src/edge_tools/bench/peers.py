"""Peer model servers in the serving section: LitServe and MLServer around the same pipeline code.

They live in their own virtual environment, `build/bench-peers/.venv`, made here with `uv` from pinned
versions, so they never become dependencies of the modules. The runtimes (numpy, ONNX Runtime, LiteRT,
Pillow, pydantic) are pinned to the versions this interpreter runs, so every side runs the same engine;
our packages come from the repository's source folders on `PYTHONPATH`. When the environment cannot be
made (no registry, a conflict), `ensure_peer_env` returns the reason and the section reports it.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_tools.azurite import REPO_ROOT
from edge_tools.bench.inference_process import free_port, wait_for_status
from edge_tools.bench.label_arg import label_arg
from edge_tools.procs import stop_process

#: The peers, pinned (the newest releases when these rows were added). MLServer 1.7.1's parallel workers
#: call `asyncio.get_event_loop()` with no loop set, which uvloop refuses from 0.22 on: its workers die
#: at start under a newer uvloop.
PEER_PACKAGES = ("litserve==0.2.19", "mlserver==1.7.1", "uvloop==0.21.0")
#: Installed at this interpreter's versions, so both sides run the same engine and decoder.
SAME_AS_HERE = ("numpy", "onnxruntime", "ai-edge-litert", "pillow", "pydantic")
PEER_ENV = REPO_ROOT / "build" / "bench-peers"
#: Each peer's own scaling knob, set to the cores of the benchmark machine (ours: 2 pipeline threads).
PEER_WORKERS = 2
SOURCES = ("tools/src", "inference_module/src", "shared/src")


@dataclass(frozen=True)
class PeerEnv:
    python: Path

    def environ(self) -> dict[str, str]:
        path = os.pathsep.join(str(REPO_ROOT / folder) for folder in SOURCES)
        return {**os.environ, "PYTHONPATH": path}


def requirements() -> list[str]:
    return [*PEER_PACKAGES, *(f"{name}=={importlib.metadata.version(name)}" for name in SAME_AS_HERE)]


def ensure_peer_env(root: Path = PEER_ENV) -> PeerEnv | str:
    """The peers' environment (made or reused), or why it could not be made."""
    venv, stamp = root / ".venv", root / "requirements.txt"
    python = venv / "bin" / "python"
    wanted = "\n".join(requirements()) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return PeerEnv(python)
    uv = shutil.which("uv")
    if uv is None:
        return "`uv` is not on PATH (make install puts it there)"
    root.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    commands = [
        [uv, "venv", "--quiet", "--clear", "--python", sys.executable, str(venv)],
        [uv, "pip", "install", "--quiet", "--python", str(python), *requirements()],
    ]
    for command in commands:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(command[:3])}` took more than 900 s"
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            return f"`uv {command[1]}` failed: {' / '.join(lines[-3:]) or f'exit code {done.returncode}'}"
    stamp.write_text(wanted)
    return PeerEnv(python)


def litserve_body(image: bytes) -> bytes:
    """LitServe reads JSON (or forms): the image as base64 in `{"image": ...}`."""
    return json.dumps({"image": base64.b64encode(image).decode()}).encode()


def mlserver_body(image: bytes) -> bytes:
    """The Open Inference Protocol's JSON: one BYTES input holding the image as base64."""
    tensor = {"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(image).decode()]}
    return json.dumps({"inputs": [tensor]}).encode()


@dataclass(frozen=True)
class Peer:
    name: str
    path: str
    body: Callable[[bytes], bytes]


LITSERVE = Peer("LitServe", "/predict", litserve_body)
MLSERVER = Peer("MLServer", "/v2/models/pipeline/infer", mlserver_body)
PEERS = (LITSERVE, MLSERVER)


class PeerServer:
    """One peer serving `model` from the peers' environment on a free loopback port; stopped on `stop`."""

    def __init__(
        self, peer: Peer, env: PeerEnv, model: Path, labels: Path | None, runtime: str, work: Path
    ) -> None:
        self.peer, self.port = peer, free_port()
        work.mkdir(parents=True, exist_ok=True)
        if peer is LITSERVE:
            module = "edge_tools.bench.peer_litserve"
            args = [str(model), label_arg(labels), runtime, str(self.port), str(PEER_WORKERS)]
            command, ready = [str(env.python), "-m", module, *args], "/health"
        else:
            folder = work / "mlserver"
            write_mlserver_settings(folder, model, labels, runtime, self.port)
            mlserver = env.python.parent / "mlserver"  # its console script (no `python -m mlserver`)
            command, ready = [str(mlserver), "start", str(folder)], "/v2/models/pipeline/ready"
        with (work / f"{peer.name}.log").open("ab") as sink:
            self.process = subprocess.Popen(
                command, env=env.environ(), stdout=sink, stderr=sink, start_new_session=True
            )
        try:
            wait_for_status(self.process, self.port, ready, peer.name)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        stop_process(self.process, 30)


def write_mlserver_settings(folder: Path, model: Path, labels: Path | None, runtime: str, port: int) -> None:
    """MLServer's `settings.json` (ports, workers) and the model's `model-settings.json`."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": PEER_WORKERS,
        "metrics_dir": str(folder / "metrics"),  # not the working directory (the repository)
        "debug": False,
    }
    model_settings = {
        "name": "pipeline",
        "implementation": "edge_tools.bench.peer_mlserver.PipelineRuntime",
        "parameters": {"uri": str(model), "extra": {"labels": label_arg(labels), "runtime": runtime}},
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(json.dumps(model_settings))


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by `pid` and every live descendant (peers serve from worker processes)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in family]
        family.update(children)
        frontier.extend(children)
    return sum(times.get(member, 0.0) for member in family)
