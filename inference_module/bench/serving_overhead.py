"""Serving overhead of `/score` over loopback vs. the same pipeline called in-process (design §12).

    python inference_module/bench/serving_overhead.py [--model ID] [--requests N] [--rounds R]

In-process: decode + preprocess + run + postprocess + JSON, sequentially, on the same model and image.
Served: `python -m inference_module` in a child process (uvloop + httptools, access log on), one
keep-alive `http.client` connection posting the same bytes. Bare: the textbook FastAPI endpoint doing
the same work (`await request.body()`, `run_in_threadpool`, a dict returned for FastAPI to serialise),
under the same uvicorn options, as the reference design §12 compares against. Requests alternate
between the three, and the report gives min/median/max over rounds of the p50 ratios and of the p50
milliseconds added.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from edge_shared.repository import ModelManifest, ModelRepository
from edge_tools.fixtures import FixtureCatalog, ensure_fixtures, make_square_image
from inference_module.imaging import ImageLimits, decode_image
from inference_module.labels import load_labels
from inference_module.pipeline import ScoreQuery, run_pipeline
from inference_module.postprocess import native_body, select_detections
from inference_module.runtimes import default_registry
from inference_module.runtimes.base import RuntimeOptions
from inference_module.service import file_sha256
from inference_module.slot import LoadedModel, ModelIdentity, ModelSlot

REPO = Path(__file__).resolve().parents[2]


def install(root: Path, catalog: FixtureCatalog, model_id: str) -> tuple[Path, Path]:
    fixture = catalog.model(model_id)
    repository = ModelRepository(root)
    repository.ensure_layout()
    directory = repository.version_dir(model_id)
    directory.mkdir()
    model = directory / Path(fixture.model_file).name
    labels = directory / Path(fixture.labels_file).name
    shutil.copyfile(catalog.path(fixture.model_file), model)
    shutil.copyfile(catalog.path(fixture.labels_file), labels)
    repository.write_manifest(
        directory,
        ModelManifest(
            version=model_id,
            file_name=f"{model_id}.zip",
            runtime=fixture.runtime,
            model_file=model.name,
            labels_file=labels.name,
            files={model.name: file_sha256(model), labels.name: file_sha256(labels)},
            source_sha256=fixture.zip.sha256,
            installed_at=datetime.now(UTC),
        ),
    )
    repository.set_current(model_id)
    return model, labels


class InProcess:
    """The same pipeline function the server runs, on the same model, called directly."""

    def __init__(self, model: Path, labels: Path, runtime: str) -> None:
        detector = default_registry()[runtime](model, RuntimeOptions())  # type: ignore[index]
        self.slot = ModelSlot()
        identity = ModelIdentity(
            version="bench",
            file_name="bench.zip",
            runtime=runtime,  # type: ignore[arg-type]
            sha256="",
            model_path=model,
            labels_path=labels,
            loaded_at=datetime.now(UTC),
        )
        self.slot.install(LoadedModel(detector, load_labels(labels), identity))
        self.query = ScoreQuery(threshold=0.5, max_detections=100)
        self.limits = ImageLimits(40_000_000, 8)

    def score(self, image: bytes) -> float:
        started = time.perf_counter()
        run_pipeline(self.slot, image, self.query, self.limits, 90)
        return time.perf_counter() - started


class Served:
    """One keep-alive connection to the server."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port)
        self.headers = {"Content-Type": "image/jpeg"}

    def score(self, image: bytes) -> float:
        started = time.perf_counter()
        self.connection.request("POST", "/score", body=image, headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        return elapsed


def bare_app(model: Path, labels: Path, runtime: str) -> FastAPI:
    """A plain FastAPI endpoint around the same pipeline: the reference point for our overhead."""
    local = InProcess(model, labels, runtime)
    loaded = local.slot.current
    assert loaded is not None
    app = FastAPI()

    def pipeline(data: bytes) -> dict[str, Any]:
        started = time.perf_counter()
        image = decode_image(data, local.limits)
        found = select_detections(
            loaded.detector.detect(image), loaded.labels, threshold=0.5, max_detections=100
        )
        elapsed = (time.perf_counter() - started) * 1000
        return native_body(found, version="bench", runtime=runtime, size=image.size, inference_ms=elapsed)

    @app.post("/score")
    async def score(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(pipeline, await request.body())

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(root: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "INFERENCE_MODEL_ROOT": str(root),
        "INFERENCE_PORT": str(port),
        "INFERENCE_HOST": "127.0.0.1",
        "INFERENCE_EDGEHUB": "false",
    }
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "inference_module"], env=env, stderr=sink)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/health/ready")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.05)
        if process.poll() is not None:
            break
    process.terminate()
    raise RuntimeError(f"server did not become ready; see {log}")


def _spread(values: list[float], digits: int) -> dict[str, float]:
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


def serve_bare(args: argparse.Namespace) -> int:
    import uvicorn

    app = bare_app(Path(args.bare_model), Path(args.bare_labels), args.bare_runtime)
    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.serve_bare, log_config=None)).run()
    return 0


def start_bare(model: Path, labels: Path, runtime: str, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, __file__, "--serve-bare", str(port), "--bare-model", str(model)]
    command += ["--bare-labels", str(labels), "--bare-runtime", runtime]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/docs")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.05)
        if process.poll() is not None:
            break
    process.terminate()
    raise RuntimeError("bare server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-yolo-heavy-1")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare-model", help=argparse.SUPPRESS)
    parser.add_argument("--bare-labels", help=argparse.SUPPRESS)
    parser.add_argument("--bare-runtime", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        return serve_bare(args)
    catalog = ensure_fixtures(REPO / "build" / "fixtures")
    image = make_square_image(416, 416, [(150, 150, 250, 250)], "JPEG")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        model, labels = install(root, catalog, args.model)
        runtime = catalog.model(args.model).runtime
        port, bare_port = free_port(), free_port()
        process = start_server(root, port, Path(tmp) / "server.log")
        bare_process = start_bare(model, labels, runtime, bare_port)
        local, remote, bare = InProcess(model, labels, runtime), Served(port), Served(bare_port)
        for _ in range(10):  # warm every path
            local.score(image), remote.score(image), bare.score(image)
        ratios, added, bare_ratios, bare_added, rows = [], [], [], [], []
        try:
            for _ in range(args.rounds):
                # interleaved, so load from other processes hits every side alike
                triples = [
                    (local.score(image), remote.score(image), bare.score(image)) for _ in range(args.requests)
                ]
                local_p50, remote_p50, bare_p50 = (statistics.median(t[i] for t in triples) for i in range(3))
                ratios.append(remote_p50 / local_p50)
                added.append((remote_p50 - local_p50) * 1000)
                bare_ratios.append(bare_p50 / local_p50)
                bare_added.append((bare_p50 - local_p50) * 1000)
                rows.append(
                    {
                        "in_process_p50_ms": round(local_p50 * 1000, 3),
                        "served_p50_ms": round(remote_p50 * 1000, 3),
                        "bare_fastapi_p50_ms": round(bare_p50 * 1000, 3),
                    }
                )
        finally:
            remote.connection.close()
            bare.connection.close()
            for child in (process, bare_process):
                child.terminate()
                child.wait(30)
    summary = {
        "model": args.model,
        "image": "416x416 JPEG",
        "requests_per_round": args.requests,
        "rounds": rows,
        "ratio_p50": _spread(ratios, 3),
        "added_ms_p50": _spread(added, 3),
        "bare_fastapi_ratio_p50": _spread(bare_ratios, 3),
        "bare_fastapi_added_ms_p50": _spread(bare_added, 3),
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
