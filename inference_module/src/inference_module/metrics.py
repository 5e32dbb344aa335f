"""Prometheus metrics of one app instance, in its own registry (no process-global collectors)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Request counts and latencies by status and model version; swaps and their failures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
        )
        self.body_bytes = Gauge(
            "inference_request_body_bytes",
            "Bytes held by request bodies being received or scored (bounded by "
            "INFERENCE_MAX_BODY_BYTES_IN_FLIGHT).",
            registry=self.registry,
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
        )

    def set_active(self, version: str | None, runtime: str | None) -> None:
        self.active.clear()
        if version is not None and runtime is not None:
            self.active.labels(version=version, runtime=runtime).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
