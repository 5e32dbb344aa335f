"""Serving overhead of `/score` over loopback vs. the same pipeline called in-process (design §12).

    python inference_module/bench/serving_overhead.py [--model ID] [--requests N] [--rounds R]

In-process: decode + preprocess + run + postprocess + JSON, sequentially, on the same model and image.
Served: `python -m inference_module` in a child process (uvloop + httptools, access log on), one
keep-alive `http.client` connection posting the same bytes. Rounds alternate the two, and the report
gives min/median/max over rounds of the p50 ratio and of the p50 milliseconds added.
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

from edge_shared.repository import ModelManifest, ModelRepository
from edge_tools.fixtures import FixtureCatalog, ensure_fixtures, make_square_image
from inference_module.imaging import ImageLimits
from inference_module.labels import load_labels
from inference_module.pipeline import ScoreQuery, run_pipeline
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


def in_process(model: Path, labels: Path, runtime: str, image: bytes, requests: int) -> list[float]:
    detector = default_registry()[runtime](model, RuntimeOptions())  # type: ignore[index]
    slot = ModelSlot()
    identity = ModelIdentity(
        version="bench",
        file_name="bench.zip",
        runtime=runtime,  # type: ignore[arg-type]
        sha256="",
        model_path=model,
        labels_path=labels,
        loaded_at=datetime.now(UTC),
    )
    slot.install(LoadedModel(detector, load_labels(labels), identity))
    query, limits = ScoreQuery(threshold=0.5, max_detections=100), ImageLimits(40_000_000, 8)
    times = []
    for _ in range(requests + 10):
        started = time.perf_counter()
        run_pipeline(slot, image, query, limits, 90)
        times.append(time.perf_counter() - started)
    slot.close()
    return times[10:]


def served(port: int, image: bytes, requests: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "image/jpeg"}
    times = []
    for _ in range(requests + 10):
        started = time.perf_counter()
        connection.request("POST", "/score", body=image, headers=headers)
        response = connection.getresponse()
        body = response.read()
        times.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
    connection.close()
    return times[10:]


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-yolo-heavy-1")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    catalog = ensure_fixtures(REPO / "build" / "fixtures")
    image = make_square_image(416, 416, [(150, 150, 250, 250)], "JPEG")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        model, labels = install(root, catalog, args.model)
        port = free_port()
        process = start_server(root, port, Path(tmp) / "server.log")
        ratios, added, rows = [], [], []
        try:
            for _ in range(args.rounds):
                local = statistics.median(
                    in_process(model, labels, catalog.model(args.model).runtime, image, args.requests)
                )
                remote = statistics.median(served(port, image, args.requests))
                ratios.append(remote / local)
                added.append((remote - local) * 1000)
                rows.append(
                    {"in_process_p50_ms": round(local * 1000, 3), "served_p50_ms": round(remote * 1000, 3)}
                )
        finally:
            process.terminate()
            process.wait(30)
    summary = {
        "model": args.model,
        "image": "416x416 JPEG",
        "requests_per_round": args.requests,
        "rounds": rows,
        "ratio_p50": {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)},
        "added_ms_p50": {"min": min(added), "median": statistics.median(added), "max": max(added)},
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
