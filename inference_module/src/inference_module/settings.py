"""Inference settings (`INFERENCE_` environment variables), built once at the entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from edge_shared.settings import ServiceSettings

MiB = 1024 * 1024
# Pillow refuses outright above twice its own MAX_IMAGE_PIXELS (89,478,485); a larger limit could not apply.
PILLOW_HARD_PIXEL_LIMIT = 2 * 89_478_485

SwapMode = Literal["preserve-availability", "preserve-memory"]


class InferenceSettings(ServiceSettings):
    """Every knob of the inference module. Unsafe values are refused at start with the field named."""

    model_config = SettingsConfigDict(
        env_prefix="INFERENCE_", extra="ignore", frozen=True, validate_default=True
    )

    host: str = Field(
        default="0.0.0.0",
        description="Address the HTTP server binds (all interfaces of the container: sibling modules reach "
        "it by name on the IoT Edge network; the deployment publishes no host port).",
    )
    port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0 picks a free port; for tests).")
    model_root: Path = Field(
        default=Path("/models"),
        description="Root of the model repository (read-only volume shared with the loader).",
    )
    edgehub: bool = Field(
        default=True,
        description="Connect to edgeHub for routed `DLModelInput` messages and the `ActiveModel` report; "
        "`false` runs standalone (swaps only through `POST /model/reload`).",
    )
    score_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Default minimum score of a returned detection."
    )
    max_detections: int = Field(
        default=100, ge=1, le=10_000, description="Default and upper bound of detections per response."
    )
    max_image_bytes: int = Field(
        default=20 * MiB, ge=1024, le=1024 * MiB, description="Largest request body; larger is answered 413."
    )
    max_image_pixels: int = Field(
        default=4096 * 4096,
        ge=1,
        le=PILLOW_HARD_PIXEL_LIMIT,
        description="Most pixels (width × height, read from the header before decoding) of an image; "
        "more is answered 413. Guards against decompression bombs. 16.8 Mpx holds a 12 Mpx phone photo "
        "and a 4K frame with room; detectors see a few hundred pixels a side anyway.",
    )
    max_decoded_bytes: int = Field(
        default=64 * MiB,
        ge=1 * MiB,
        le=1024 * MiB,
        description="Most memory decoding one image may take: pixels × bytes per pixel (Pillow keeps colour "
        "at 4, and any mode but RGB needs an RGB copy), read from the header; more is answered 413. A JPEG "
        "is decoded at 1/2..1/8 scale to fit instead. 64 MiB: a 16.8 Mpx RGB image; an RGBA one up to "
        "8.4 Mpx. The review's 39.7 Mpx 16-bit RGBA PNG (318 MB) is refused before decoding.",
    )
    large_decode_bytes: int = Field(
        default=16 * MiB,
        ge=1 * MiB,
        le=1024 * MiB,
        description="Decodes needing more than this run one at a time (another is answered 503 at once, "
        "so pipeline threads stay free for normal requests) and give their memory back to the system "
        "afterwards. 16 MiB: a 4 Mpx RGB frame is never held back; big JPEGs decode reduced under it.",
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Most bytes of a request line and headers; more is answered 431 and the connection "
        "closed. 16 KiB, as h11's default: image clients send a few hundred bytes.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Time a connection may take to send a request's line and headers; then it gets 408 and "
        "is closed (slowloris). 10 s: a LAN client sends them in one packet.",
    )
    body_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Time a request may take to send its whole body; then it gets 408 and its bytes are "
        "dropped. 60 s: a 20 MiB body needs 2.8 Mbit/s, a 2 MB camera frame 0.3 Mbit/s.",
    )
    max_body_bytes_in_flight: int = Field(
        default=64 * MiB,
        ge=1024,
        le=4096 * MiB,
        description="Most bytes all request bodies being received or scored may hold together; a body that "
        "would go past it is answered 503 at once. 64 MiB: three bodies at the 20 MiB limit, or the "
        "queue full of 3 MB frames.",
    )
    min_image_side: int = Field(
        default=8, ge=1, le=4096, description="Images narrower or lower than this are answered 400."
    )
    max_queue: int = Field(
        default=16,
        ge=0,
        le=10_000,
        description="Requests allowed to wait for a pipeline thread; one more is answered 503 at once.",
    )
    pipeline_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Worker threads that each decode, preprocess, run and postprocess one request.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Processes serving the port, each with its own copy of the model and its own "
        "`PIPELINE_THREADS`; the first holds the edgeHub connection, hands out connections in turn and "
        "swaps every worker together. More than 1 trades memory (one model and interpreter per worker) "
        "for throughput on light models with several clients (docs/inference.md, Serving knobs).",
    )
    worker_ping_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="With several workers, how often the leader checks that each follower answers; one "
        "that does not answer within this time is replaced (its connections are lost, no new ones reach "
        "it). 5 s: a hung worker costs its share of new connections for at most about 10 s.",
    )
    ort_intra_op_threads: int = Field(
        default=1, ge=0, le=64, description="ONNX Runtime intra-op threads per run (0: ORT's default)."
    )
    ort_inter_op_threads: int = Field(
        default=1, ge=0, le=64, description="ONNX Runtime inter-op threads (0: ORT's default)."
    )
    tflite_threads: int = Field(default=1, ge=1, le=64, description="TFLite interpreter threads per invoke.")
    onnx_input_size: int = Field(
        default=416,
        ge=32,
        le=4096,
        description="Network side for ONNX models whose image input has symbolic height/width "
        "(the zoo's tiny-YOLOv3 does); a fixed size in the model always wins.",
    )
    swap_mode: SwapMode = Field(
        default="preserve-availability",
        description="When two models cannot fit in memory: `preserve-availability` refuses the new one "
        "(the old keeps serving); `preserve-memory` unloads the old first (brief 503s).",
    )
    load_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Longest a model load (reading files, session, warm-up) may take before the swap is "
        "refused as `load_timeout` and the swap lock freed. 120 s: the heavy fixture loads in under 1 s "
        "on 2 cores; a 250 MB model on a slow SD card takes tens of seconds.",
    )
    load_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Added to the nice value of the thread that loads a new model (hash, session, "
        "warm-up; Linux), so the requests served meanwhile win the cores. 0 loads at their priority. 10: "
        "p99 during back-to-back swaps 1.33× steady instead of 1.51×; a load competing with three busy "
        "threads on 2 cores took 7× longer than at 0, so with large models on saturated devices lower "
        "this or raise LOAD_TIMEOUT_SECONDS.",
    )
    reject_after_failures: int = Field(
        default=5,
        ge=0,
        le=10_000,
        description="Requests in a row the serving model may fail (HTTP 500 from the model itself, not "
        "from a bad image) before the loader is told to put the previous version back, as for a model "
        "refused at load (`failing_requests`). 0 never tells. 5: one bad frame is not enough, a model that "
        "fails every request is rolled back within a second at normal request rates.",
    )
    model_activation_factor: float = Field(
        default=16.0,
        ge=1.0,
        le=1000.0,
        description="Memory a model is assumed to take per pipeline thread, as a multiple of the input "
        "tensor it declares (input buffer plus intermediate tensors), checked before any tensor is "
        "allocated. 16: warm-up of a tiny-YOLOv3-shaped backbone grew the process by 12× its input.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="When set, `POST /model/reload` requires `Authorization: Bearer <token>` (401 "
        "otherwise). Scoring and reading routes stay open to the sibling modules.",
    )
    swap_memory_factor: float = Field(
        default=2.0,
        ge=1.0,
        le=100.0,
        description="A model's weights are assumed to need its file size times this much memory once "
        "loaded (its input and intermediate tensors are counted apart).",
    )
    swap_memory_reserve_bytes: int = Field(
        default=64 * MiB,
        ge=0,
        description="Memory that must stay available after loading a model (the first one too), before "
        "and after its warm-up.",
    )
    retry_after_seconds: int = Field(
        default=1, ge=1, le=3600, description="`Retry-After` value of 503 answers, in seconds."
    )
    annotated_jpeg_quality: int = Field(
        default=90, ge=1, le=95, description="JPEG quality of `/score/annotated` images."
    )
    access_log: bool = Field(default=True, description="Log one JSON line per HTTP request.")

    @model_validator(mode="after")
    def _check_threads(self) -> InferenceSettings:
        if self.max_image_pixels < self.min_image_side * self.min_image_side:
            raise ValueError("max_image_pixels must allow at least a min_image_side × min_image_side image")
        if self.large_decode_bytes > self.max_decoded_bytes:
            raise ValueError("large_decode_bytes must not exceed max_decoded_bytes")
        if self.max_body_bytes_in_flight < self.max_image_bytes:
            raise ValueError("max_body_bytes_in_flight must hold at least one body of max_image_bytes")
        if self.workers > 1 and self.swap_mode == "preserve-memory":
            raise ValueError(
                "workers > 1 needs swap_mode preserve-availability: a swap across workers is prepared in "
                "all of them beside the serving model, so none ever serves without one"
            )
        return self
