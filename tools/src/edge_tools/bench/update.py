"""Section 4: update latency. Desired PATCH → new version serving, minus download and model load time.

The whole local stack runs (Azurite, the edgeHub simulator, loader and inference as processes wired as
`deployment.json` says). Each update publishes a fixture ZIP under a new version with `demo.publish`
(blob upload + twin PATCH) and polls `/model` every 10 ms until that version serves. Download time is a
plain GET of the same SAS URL; model load time is the swap's build step in a fresh interpreter. The
loader's reported `startedAt` / `finishedAt` split the rest into twin delivery and the loader's work up to
the inference module's word that it serves the version (announce + swap included, as the loader reports
`ready` only then); the last figure is how long after `/model` shows it the loader reports `ready`.
"""

from __future__ import annotations

import logging
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from edge_shared.desired import parse_desired
from edge_tools.bench.model_memory import measure
from edge_tools.bench.profile import Profile
from edge_tools.bench.results import SectionResult
from edge_tools.fixtures import FixtureCatalog
from edge_tools.publish.blob import ssl_context
from edge_tools.stack.demo import publish, wait_until_serving
from edge_tools.stack.stack import LocalStack

logger = logging.getLogger(__name__)

MODELS = ("tiny-yolo-1", "tiny-yolo-2")
SERVE_TIMEOUT = 120.0


def _wait_serving(client: httpx.Client, url: str, version: str) -> datetime:
    deadline = time.monotonic() + SERVE_TIMEOUT
    while time.monotonic() < deadline:
        response = client.get(f"{url}/model")
        if response.is_success and response.json().get("version") == version:
            return datetime.now(UTC)
        time.sleep(0.01)
    raise TimeoutError(f"version {version} was not serving after {SERVE_TIMEOUT:.0f} s")


def _ready_update(stack: LocalStack, version: str) -> dict[str, Any] | None:
    update: dict[str, Any] = stack.reported("loader").get("ModelUpdate") or {}
    return update if update.get("version") == version and update.get("state") == "ready" else None


def _download_seconds(stack: LocalStack, ca_file: Path) -> float:
    with stack.hub() as hub:
        twin = hub.get_module_twin(stack.endpoints.device_id, "loader")
    url = parse_desired(twin["properties"]["desired"]).download_url.get_secret_value()
    with httpx.Client(verify=ssl_context(str(ca_file)), timeout=60.0) as client:
        started = time.perf_counter()
        client.get(url).raise_for_status()
        return time.perf_counter() - started


def run(catalog: FixtureCatalog, profile: Profile, work: Path) -> SectionResult:
    section = SectionResult(
        key="update",
        title="Update latency",
        setup=(
            "The local stack (`edge_tools.stack.LocalStack`: Azurite, the edgeHub simulator, loader and "
            f"inference as processes). {profile.updates} updates, alternating `{MODELS[0]}` / `{MODELS[1]}` "
            "ZIPs under new versions; each clock starts before the blob upload and the desired PATCH "
            "(`edge_tools.stack.demo.publish`) and stops when `GET /model` (polled every 10 ms) shows the "
            "version. Download = a plain GET of the same SAS URL; model load = hash + labels + session + "
            "warm-up in a fresh interpreter."
        ),
    )
    fixtures = [catalog.model(m) for m in MODELS]
    model_dir = catalog.path(fixtures[1].model_file).parent
    load = measure(
        model_dir / Path(fixtures[1].model_file).name, catalog.path(fixtures[1].label_file), "onnx"
    )
    totals, downloads, overheads, delivery, loader_work, swap = [], [], [], [], [], []
    with LocalStack(work / "stack") as stack, httpx.Client(timeout=10.0) as client:
        url = stack.endpoints.inference_url
        publish(stack, catalog.path(fixtures[0].zip_file), "bench-warm")
        wait_until_serving(stack, "bench-warm")
        for index in range(profile.updates):
            fixture = fixtures[(index + 1) % 2]
            version = f"bench-{index + 1}"
            logger.info("update latency: %s", version)
            started_at = datetime.now(UTC)
            started = time.perf_counter()
            publish(stack, catalog.path(fixture.zip_file), version)
            served_at = _wait_serving(client, url, version)
            total = time.perf_counter() - started
            update = stack.wait_for(
                f"the loader to report {version} ready", lambda v=version: _ready_update(stack, v), timeout=60
            )
            download = _download_seconds(stack, stack.endpoints.storage_ca_file)
            totals.append(total)
            downloads.append(download)
            overheads.append(total - download - load.load_seconds)
            if update.get("version") == version and update.get("startedAt") and update.get("finishedAt"):
                began = datetime.fromisoformat(update["startedAt"])
                ended = datetime.fromisoformat(update["finishedAt"])
                delivery.append((began - started_at).total_seconds())
                loader_work.append((ended - began).total_seconds())
                swap.append((ended - served_at).total_seconds())
    section.figure("desired PATCH (with blob upload) → new version serving", "s", totals, 3)
    section.figure("download alone (plain GET of the SAS URL)", "s", downloads, 3)
    section.figure("model load alone (fresh interpreter)", "s", [load.load_seconds], 3)
    over = section.figure("update latency minus (download + model load)", "s", overheads, 3)
    cause = "see the split below"
    if delivery:
        d = section.figure("  of which: upload + PATCH → loader starts (twin delivery)", "s", delivery, 3)
        w = section.figure(
            "  loader work (download, verify, install, announce, swap, the word back)", "s", loader_work, 3
        )
        s = section.figure("  serving → loader reports ready (InferenceStatus routed back)", "s", swap, 3)
        cause = (
            f"median split: {d.median:.2f} s upload + PATCH until the loader starts, {w.median:.2f} s "
            f"loader work until the inference module says it serves, which the loader reports "
            f"{s.median:.3f} s after `/model` shows it (wall clocks of the processes)"
        )
    section.goal(
        "update latency minus (download + model load)", "≤ 1 s", f"{over.median:.3f} s (median)",
        over.median <= 1.0, cause,
    )  # fmt: skip
    if delivery:
        section.notes.append(f"Median of the split above: {statistics.median(totals):.3f} s end to end.")
    return section
