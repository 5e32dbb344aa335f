"""Section 5: cold start. Inference process start → `/health/ready` from `current`, vs. model load alone."""

from __future__ import annotations

import logging
from pathlib import Path

from edge_tools.bench.inference_process import InferenceProcess, install_model_files
from edge_tools.bench.model_memory import measure
from edge_tools.bench.profile import Profile
from edge_tools.bench.results import SectionResult
from edge_tools.fixtures import FixtureCatalog

logger = logging.getLogger(__name__)

MODELS = ("tiny-yolo-1", "tiny-yolo-heavy-1", "ssd-lite-1")


def run(catalog: FixtureCatalog, profile: Profile, work: Path) -> SectionResult:
    section = SectionResult(
        key="coldstart",
        title="Cold start",
        setup=(
            "`python -m inference_module` (standalone, no network) on a model root whose `current` names the "
            "model: spawn → first 200 from `/health/ready`, a fresh process each time, "
            f"{profile.cold_starts} starts per model. Model load alone = hash + labels + session + warm-up "
            "in a fresh interpreter after its imports; imports = `inference_module` and the runtimes."
        ),
    )
    for model_id in MODELS[: profile.cold_start_models]:
        fixture = catalog.model(model_id)
        root = work / f"cold-{model_id}"
        model, labels = install_model_files(root, catalog, model_id)
        starts, loads, imports = [], [], []
        for _ in range(profile.cold_starts):
            logger.info("cold start: %s", model_id)
            with InferenceProcess(root, work / f"cold-{model_id}.log") as server:
                starts.append(server.ready_seconds)
            cost = measure(model, labels, fixture.runtime)
            loads.append(cost.load_seconds)
            imports.append(cost.import_seconds)
        start = section.figure(f"`{model_id}`: process start → ready", "s", starts, 3)
        load = section.figure(f"`{model_id}`: model load alone", "s", loads, 3)
        section.figure(f"`{model_id}`: imports alone (fresh interpreter)", "s", imports, 3)
        section.figure(
            f"`{model_id}`: start → ready minus model load",
            "s",
            [s - x for s, x in zip(starts, loads, strict=True)],
            3,
        )
        section.notes.append(
            f"`{model_id}`: {start.median:.2f} s to ready, of which the model load is {load.median:.3f} s; "
            "the rest is interpreter start, imports (ONNX Runtime, TFLite, FastAPI, numpy), settings and "
            "the HTTP server's start."
        )
    return section
