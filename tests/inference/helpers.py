"""Test helpers for the inference module: a real uvicorn on loopback, a model repository, fakes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Unpack

import numpy as np
import uvicorn
from fastapi import FastAPI
from PIL import Image

from edge_shared.messages import ModelAnnouncement
from edge_tools.fixtures import FixtureCatalog, InstallOptions, install_fixture_model
from inference_module.runtimes.base import DetectorMetadata, RawDetections, RuntimeOptions
from inference_module.server import server_config
from inference_module.settings import InferenceSettings

STARTUP_TIMEOUT = 30.0


class _Server(uvicorn.Server):
    """uvicorn that tells when its sockets listen, so tests wait on that and never sleep."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.on_ready: Callable[[], None] | None = None

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets)  # type: ignore[arg-type]
        if self.started:
            self.ready.set()
            if self.on_ready is not None:
                self.on_ready()


def _server(app: FastAPI, settings: InferenceSettings | None = None) -> _Server:
    """Plain uvicorn, or with `settings` the module's own server configuration (its protocol limits)."""
    loopback: dict[str, object] = {"host": "127.0.0.1", "port": 0, "access_log": False, "loop": "asyncio"}
    if settings is not None:
        return _Server(server_config(app, settings, **loopback))
    return _Server(uvicorn.Config(app, log_config=None, lifespan="on", **loopback))  # type: ignore[arg-type]


def _base_url(server: _Server) -> str:
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


@contextlib.asynccontextmanager
async def serve(app: FastAPI, settings: InferenceSettings | None = None) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1 with a free port on this loop; yield its base URL; always stop it."""
    server = _server(app, settings)
    started = asyncio.Event()
    server.on_ready = started.set
    task = asyncio.create_task(server.serve())
    ready = asyncio.create_task(started.wait())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=STARTUP_TIMEOUT, return_when="FIRST_COMPLETED")
        if ready not in done:
            raise RuntimeError("uvicorn did not start")
        yield _base_url(server)
    finally:
        ready.cancel()
        server.should_exit = True
        async with asyncio.timeout(STARTUP_TIMEOUT):
            await task


@contextlib.contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """The same in a background thread, for synchronous tests (schemathesis)."""
    server = _server(app)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(STARTUP_TIMEOUT):
            raise RuntimeError("uvicorn did not start")
        yield _base_url(server)
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT)


def install_model(
    root: Path, catalog: FixtureCatalog, model_id: str, **options: Unpack[InstallOptions]
) -> ModelAnnouncement:
    """Install a fixture model as the loader would (files, manifest, `current`); return its announcement."""
    manifest = install_fixture_model(root, catalog, model_id, **options)
    folder = f"models/{manifest.version}"
    return ModelAnnouncement(
        local_model_path=f"{folder}/{manifest.model_file}",
        local_labelmap_path=None if manifest.labels_file is None else f"{folder}/{manifest.labels_file}",
        version=manifest.version,
        file_name=manifest.file_name,
        runtime=manifest.runtime,
        sha256=manifest.model_sha256,
    )


@dataclass
class GatedDetector:
    """A detector whose `detect` blocks until the test opens the gate: swap tests need no sleeps.

    The first `warm_ups` calls (the swap's warm-up) neither block nor fail.
    """

    name: str
    gate: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    calls: int = 0
    warm_ups: int = 0

    @property
    def metadata(self) -> DetectorMetadata:
        return DetectorMetadata(
            runtime="onnx",
            input_shape=(1, 3, 32, 32),
            input_dtype="float32",
            input_names=("images",),
            output_names=("boxes",),
        )

    def detect(self, image: Image.Image) -> RawDetections:  # noqa: ARG002 - the fake ignores pixels
        self.calls += 1
        if self.calls > self.warm_ups:  # the swap's warm-up on a sample frame passes through
            self.entered.set()
            if not self.gate.wait(timeout=30):
                raise TimeoutError("gate never opened")
            if self.closed.is_set():
                raise RuntimeError("detect on a closed model")
        return RawDetections(
            boxes=np.array([[0.1, 0.2, 0.5, 0.6]], np.float32),
            scores=np.array([0.9], np.float32),
            class_ids=np.array([0], np.int64),
        )

    def close(self) -> None:
        self.closed.set()


@dataclass
class GatedFactory:
    """Registry entry handing out `GatedDetector`s (open gates unless told otherwise), or failing."""

    detectors: list[GatedDetector] = field(default_factory=list)
    fail_next: bool = False
    open_gates: bool = True

    def __call__(self, model_path: Path, options: RuntimeOptions) -> GatedDetector:  # noqa: ARG002
        if self.fail_next:
            self.fail_next = False
            raise ValueError(f"cannot load {model_path.name}")
        detector = GatedDetector(name=model_path.parent.name, warm_ups=1)
        if self.open_gates:
            detector.gate.set()
        self.detectors.append(detector)
        return detector


def module_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of `python -m inference_module` on `root`: loopback, a free port, no edgeHub."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
    env.update(
        INFERENCE_MODEL_ROOT=str(root),
        INFERENCE_HOST="127.0.0.1",
        INFERENCE_PORT="0",
        INFERENCE_EDGEHUB="false",
        **extra,
    )
    return env
