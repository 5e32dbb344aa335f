"""Section 2: swap under load. 4 clients post continuously while the model is swapped 20 times.

The inference module runs as its own process on a model root with two versions; each swap points
`current` at the other version and calls `POST /model/reload` (the same swap path as a routed message).
Steady p99 and RSS come from the same clients just before, without swaps; the peak is the process's
VmHWM, reset (`/proc/<pid>/clear_refs`) when the swaps start.
"""

from __future__ import annotations

import http.client
import json
import logging
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_shared.repository import ModelRepository
from edge_tools.bench.inference_process import InferenceProcess, install_fixture, status_kib
from edge_tools.bench.model_memory import measure
from edge_tools.bench.profile import Profile
from edge_tools.bench.results import SectionResult
from edge_tools.bench.serving import Served
from edge_tools.fixtures import FixtureCatalog, make_square_image

logger = logging.getLogger(__name__)

CLIENTS = 4
VERSIONS = ("tiny-yolo-1", "tiny-yolo-2")
MAX_PHASE_SECONDS = 300.0


@dataclass(slots=True)
class Tally:
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client(port: int, image: bytes, stop: threading.Event, tally: Tally, limit: int | None) -> None:
    client = Served(port)
    deadline = time.monotonic() + MAX_PHASE_SECONDS
    done = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline and (limit is None or done < limit):
            try:
                latency = client.score(image)
            except (OSError, RuntimeError, http.client.HTTPException) as exc:
                with tally.lock:
                    tally.failures.append(f"{type(exc).__name__}: {exc}")
                client.close()
                client = Served(port)
            else:
                with tally.lock:
                    tally.latencies.append(latency)
            done += 1
    finally:
        client.close()


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]


def _reload(port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/model/reload")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"reload answered {response.status}: {body[:200]!r}")
    finally:
        connection.close()


def build_cpu_ms(log: Path, offset: int) -> list[float]:
    """`build_cpu_ms` of every reload's build the server logged past `offset` (JSON lines)."""
    with log.open("rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode("utf-8", "replace").splitlines()
    figures = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # uvicorn's own start-up lines
        if isinstance(entry, dict) and entry.get("swap_source") == "reload" and "build_cpu_ms" in entry:
            figures.append(float(entry["build_cpu_ms"]))
    return figures


def one_round(root: Path, profile: Profile, work: Path, image: bytes) -> tuple[dict[str, float], str]:
    repository = ModelRepository(root)
    log = work / "swap-server.log"
    offset = log.stat().st_size if log.exists() else 0
    with InferenceProcess(root, log) as server:
        steady = Tally()
        per_client = max(1, profile.swap_steady_requests // CLIENTS)
        threads = [
            threading.Thread(target=_client, args=(server.port, image, threading.Event(), steady, per_client))
            for _ in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(MAX_PHASE_SECONDS + 30)
        steady_rss = status_kib(server.pid, "VmRSS") / 1024
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")
        during, stop = Tally(), threading.Event()
        threads = [
            threading.Thread(target=_client, args=(server.port, image, stop, during, None))
            for _ in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        swap_seconds = []
        try:
            for index in range(profile.swaps):
                repository.set_current(VERSIONS[(index + 1) % 2])
                started = time.perf_counter()
                _reload(server.port)
                swap_seconds.append(time.perf_counter() - started)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        peak_rss = status_kib(server.pid, "VmHWM") / 1024
    if steady.failures:
        raise RuntimeError(f"requests failed before any swap: {steady.failures[:3]}")
    builds = build_cpu_ms(log, offset)
    return {
        "failures": len(during.failures),
        "requests": len(during.latencies) + len(during.failures),
        "steady_p99": _p99(steady.latencies) * 1000,
        "swap_p99": _p99(during.latencies) * 1000,
        "steady_rss": steady_rss,
        "peak_rss": peak_rss,
        "swap_seconds": statistics.median(swap_seconds),
        "build_cpu_ms": statistics.median(builds) if builds else float("nan"),
    }, (during.failures[0] if during.failures else "")


def run(catalog: FixtureCatalog, profile: Profile, work: Path) -> SectionResult:
    rounds = min(profile.rounds, 3)
    section = SectionResult(
        key="swap",
        title="Swap under load",
        setup=(
            f"`python -m inference_module` (standalone) with `{VERSIONS[0]}` and `{VERSIONS[1]}` installed; "
            f"{CLIENTS} clients (keep-alive, one thread each, in the benchmark process) post a 416×416 JPEG "
            f"continuously while `current` is switched and `POST /model/reload` called {profile.swaps} times "
            f"in a row. Steady figures: the same {CLIENTS} clients, {profile.swap_steady_requests} requests "
            f"just before, no swaps. {rounds} rounds, a fresh server each. One model = resident memory a "
            "fresh interpreter adds when it loads and warms the model."
        ),
    )
    root = work / "swap-models"
    for version in VERSIONS:
        directory = install_fixture(root, catalog, version, current=version == VERSIONS[0])
    fixture = catalog.model(VERSIONS[1])
    cost = measure(
        directory / Path(fixture.model_file).name, directory / Path(fixture.label_file).name, "onnx"
    )
    image = make_square_image(416, 416, [(150, 150, 250, 250)], "JPEG")
    results: list[dict[str, float]] = []
    examples: list[str] = []
    for _ in range(rounds):
        logger.info("swap under load: round %d", len(results) + 1)
        figures, example = one_round(root, profile, work, image)
        results.append(figures)
        examples.append(example)
    failures = sum(int(r["failures"]) for r in results)
    section.figure("requests during the swaps", "count", [r["requests"] for r in results], 0)
    section.figure("failed requests during the swaps", "count", [r["failures"] for r in results], 0)
    section.figure("steady p99", "ms", [r["steady_p99"] for r in results])
    section.figure("p99 during swaps", "ms", [r["swap_p99"] for r in results])
    ratio = section.figure(
        "p99 during swaps / steady p99", "×", [r["swap_p99"] / r["steady_p99"] for r in results]
    )
    section.figure(
        "`POST /model/reload` (one swap) median", "ms", [r["swap_seconds"] * 1000 for r in results], 1
    )
    section.figure(
        "CPU of one swap's build (server log `build_cpu_ms`) median",
        "ms",
        [r["build_cpu_ms"] for r in results],
        1,
    )
    section.figure("steady RSS", "MiB", [r["steady_rss"] for r in results], 1)
    section.figure("peak RSS during swaps (VmHWM)", "MiB", [r["peak_rss"] for r in results], 1)
    section.figure("one model (resident memory added by load + warm-up)", "MiB", [cost.rss_added_mib], 1)
    allowed = [(r["steady_rss"] + cost.rss_added_mib) * 1.10 for r in results]
    over = [r["peak_rss"] / a for r, a in zip(results, allowed, strict=True)]
    peak = section.figure("peak RSS / (steady + one model + 10 %)", "×", over, 3)
    example = next((e for e in examples if e), "")
    section.goal(
        "failed requests", "0", str(failures), failures == 0,
        f"{failures} requests failed, e.g. {example}",
    )  # fmt: skip
    section.goal(
        "p99 during swaps / steady p99", "≤ 1.5×", f"{ratio.median:.2f}×", ratio.median <= 1.5,
        "each swap hashes, loads and warms the new model on the same 2 cores the 4 clients and the "
        f"server share ({statistics.median(r['build_cpu_ms'] for r in results):.0f} ms of CPU per build, at "
        "`INFERENCE_LOAD_NICE`; a swap took "
        f"{statistics.median(r['swap_seconds'] for r in results) * 1000:.0f} ms median), and requests "
        "queue behind what of it the scheduler still gives the build",
    )  # fmt: skip
    section.goal(
        "peak RSS", "≤ steady + one model + 10 %", f"{peak.high:.3f}× of the allowance (worst round)",
        peak.high <= 1.0,
        "both models are resident while the new one warms (swap = build, warm, switch, drop); freed "
        "heap is handed back before and after each build, so what remains is both models' live memory",
    )  # fmt: skip
    return section
