"""The serving pipeline called directly (no HTTP), and the reference architecture's per-request session."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from edge_shared.reported import Runtime
from inference_module.imaging import ImageLimits, decode_image
from inference_module.labels import load_labels, model_labels
from inference_module.pipeline import ScoreQuery, run_pipeline
from inference_module.postprocess import native_body, select_detections
from inference_module.runtimes import default_registry
from inference_module.runtimes.base import RuntimeOptions
from inference_module.slot import LoadedModel, ModelIdentity, ModelSlot

QUERY = ScoreQuery(threshold=0.5, max_detections=100)
LIMITS = ImageLimits(40_000_000, 8)
JPEG_QUALITY = 90


def load_model(model: Path, labels: Path | None, runtime: str) -> LoadedModel:
    """What a swap builds: labels read, session created and warmed (the registry's loader warms once)."""
    detector = default_registry()[cast(Runtime, runtime)](model, RuntimeOptions())
    file_labels = None if labels is None else load_labels(labels)
    chosen = model_labels(file_labels, labels, detector.metadata)
    identity = ModelIdentity(
        version="bench",
        file_name="bench.zip",
        runtime=cast(Runtime, runtime),
        sha256="",
        model_path=model,
        labels_path=labels,
        loaded_at=datetime.now(UTC),
    )
    return LoadedModel(detector, chosen.names, identity)


class InProcess:
    """The same `run_pipeline` the server runs (decode, preprocess, run, postprocess, JSON body)."""

    def __init__(self, model: Path, labels: Path | None, runtime: str) -> None:
        self.slot = ModelSlot()
        self.slot.install(load_model(model, labels, runtime))
        self.limits = LIMITS

    def score(self, image: bytes) -> float:
        started = time.perf_counter()
        run_pipeline(self.slot, image, QUERY, self.limits, JPEG_QUALITY)
        return time.perf_counter() - started

    def native(self, data: bytes) -> dict[str, Any]:
        """The textbook version for the bare FastAPI endpoint and the peers (LitServe, MLServer): decode,
        detect, select, and the native body as a dict for the framework to serialise."""
        loaded = self.slot.current
        if loaded is None:
            raise RuntimeError("the model did not load")
        started = time.perf_counter()
        image = decode_image(data, self.limits)
        found = select_detections(
            loaded.detector.detect(image),
            loaded.labels,
            threshold=QUERY.threshold,
            max_detections=QUERY.max_detections,
        )
        elapsed = (time.perf_counter() - started) * 1000
        return native_body(
            found,
            version=loaded.identity.version,
            runtime=loaded.identity.runtime,
            size=image.size,
            inference_ms=elapsed,
        )

    def close(self) -> None:
        self.slot.close()


class SessionPerRequest:
    """The reference architecture's approach: a new session and a label-file read for every request."""

    def __init__(self, model: Path, labels: Path | None, runtime: str) -> None:
        self.model, self.labels, self.runtime = model, labels, runtime

    def score(self, image: bytes) -> float:
        started = time.perf_counter()
        slot = ModelSlot()
        slot.install(load_model(self.model, self.labels, self.runtime))
        try:
            run_pipeline(slot, image, QUERY, LIMITS, JPEG_QUALITY)
        finally:
            slot.close()
        return time.perf_counter() - started
