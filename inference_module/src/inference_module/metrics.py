"""Prometheus metrics of one app instance, in its own registry (no process-global collectors).

With several workers (`INFERENCE_WORKERS` > 1) every process writes its values to the directory the
leader names in `PROMETHEUS_MULTIPROC_DIR`, and `/metrics` on any worker sums them: counters and
histograms over all workers, the pending and body-bytes gauges over the live ones.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Request counts and latencies by status and model version; swaps and their failures."""

    def __init__(self, *, workers: int = 1) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR") if workers > 1 else None
        self._render_registry = self.registry
        if shared:
            self._render_registry = CollectorRegistry()
            MultiProcessCollector(self._render_registry, path=shared)  # type: ignore[no-untyped-call]
        self._shared = bool(shared)
        self.requests = Counter(
            "inference_requests",
            "Scoring requests answered, by route, status and model version.",
            ("route", "status", "model_version"),
            registry=self.registry,
        )
        self.client_disconnects = Counter(
            "inference_client_disconnects",
            "Scoring requests whose client hung up before its body arrived (counted as status 499).",
            ("route",),
            registry=self.registry,
        )
        self.latency = Histogram(
            "inference_request_seconds",
            "Time from request received to answer ready, by route, status and model version.",
            ("route", "status", "model_version"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pipeline = Histogram(
            "inference_pipeline_seconds",
            "Decode, preprocess, inference and postprocess in the pipeline thread, by model version.",
            ("model_version",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "inference_pending_requests",
            "Scoring requests running or waiting for a pipeline thread.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.body_bytes = Gauge(
            "inference_request_body_bytes",
            "Bytes held by request bodies being received or scored (bounded by "
            "INFERENCE_MAX_BODY_BYTES_IN_FLIGHT, per worker).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.swaps = Counter(
            "inference_model_swaps",
            "Models put into service, by source (startup, message, reload).",
            ("source",),
            registry=self.registry,
        )
        self.swap_failures = Counter(
            "inference_model_swap_failures",
            "Swaps refused or failed (the old model kept serving), by source and error code.",
            ("source", "code"),
            registry=self.registry,
        )
        self.unloads = Counter(
            "inference_model_unloads_for_memory",
            "Times the serving model was unloaded before loading the next (preserve-memory mode).",
            registry=self.registry,
        )
        self.active = Gauge(
            "inference_active_model_info",
            "1 for the model serving now, labelled by version and runtime.",
            ("version", "runtime"),
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self._active: tuple[str, str] | None = None

    def set_active(self, version: str | None, runtime: str | None) -> None:
        if self._shared and self._active is not None:
            # Shared values outlive `clear()`: the version that stopped serving is set to 0 instead.
            self.active.labels(*self._active).set(0)
        else:
            self.active.clear()
        self._active = None
        if version is not None and runtime is not None:
            self._active = (version, runtime)
            self.active.labels(version=version, runtime=runtime).set(1)

    def render(self) -> bytes:
        return generate_latest(self._render_registry)
