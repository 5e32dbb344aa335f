"""Inference settings (`INFERENCE_` environment variables), built once at the entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
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

    host: str = Field(default="0.0.0.0", description="Address the HTTP server binds.")
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
        default=40_000_000,
        ge=1,
        le=PILLOW_HARD_PIXEL_LIMIT,
        description="Most pixels (width × height, read from the header before decoding) of an image; "
        "more is answered 413. Guards against decompression bombs.",
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
    swap_memory_factor: float = Field(
        default=2.0,
        ge=1.0,
        le=100.0,
        description="A model is assumed to need its file size times this much memory once loaded.",
    )
    swap_memory_reserve_bytes: int = Field(
        default=64 * MiB,
        ge=0,
        description="Memory that must stay available after loading a second model.",
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
        return self
