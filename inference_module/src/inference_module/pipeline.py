"""One scoring request, start to finish, in one pipeline thread: decode → detect → postprocess → bytes.

Kept in a single function so that a request costs one thread hop; the event loop only reads the body,
dispatches and sends the bytes back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from inference_module.annotate import draw_detections
from inference_module.errors import InferenceError, ModelFailedError
from inference_module.imaging import ImageLimits, decode_for_model, encode_jpeg
from inference_module.memory import give_back_memory
from inference_module.postprocess import (
    ResponseFormat,
    ava_body,
    native_body,
    select_detections,
    to_json_bytes,
)
from inference_module.slot import ModelSlot


@dataclass(frozen=True, slots=True)
class ScoreQuery:
    threshold: float
    max_detections: int
    response_format: ResponseFormat = "native"
    annotated: bool = False


@dataclass(frozen=True, slots=True)
class ScoreResult:
    body: bytes
    media_type: str
    model_version: str
    pipeline_seconds: float


def run_pipeline(
    slot: ModelSlot, data: bytes, query: ScoreQuery, limits: ImageLimits, jpeg_quality: int
) -> ScoreResult:
    """Score one image on the model serving when decoding is done; that model stays open until we return."""
    started = time.perf_counter()
    image, size = decode_for_model(data, limits, draft_to=None if query.annotated else _draft_hint(slot))
    model = slot.acquire()
    try:
        raw = model.detector.detect(image)
        detections = select_detections(
            raw, model.labels, threshold=query.threshold, max_detections=query.max_detections
        )
        identity = model.identity
    except InferenceError:
        raise
    except Exception as exc:  # the model (or its runtime) is at fault, not the image: counted apart
        raise ModelFailedError(
            model.identity.version, f"the model failed on this image: {exc.__class__.__name__}"
        ) from exc
    finally:
        slot.release(model)
    if query.annotated:
        body = encode_jpeg(draw_detections(image, detections), jpeg_quality)
        media_type = "image/jpeg"
    else:
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        payload = (
            ava_body(detections)
            if query.response_format == "ava"
            else native_body(
                detections,
                version=identity.version,
                runtime=identity.runtime,
                size=size,
                inference_ms=elapsed_ms,
            )
        )
        body = to_json_bytes(payload)
        media_type = "application/json"
    if image.width * image.height * 4 > limits.large_decode_bytes:
        del image
        give_back_memory()  # a large image's pages go back to the system, not to this thread's arena
    return ScoreResult(
        body=body,
        media_type=media_type,
        model_version=identity.version,
        pipeline_seconds=time.perf_counter() - started,
    )


def _draft_hint(slot: ModelSlot) -> int | None:
    """The serving model's larger input side: decoding a big JPEG finer than that is wasted work.

    Read without taking the model: if a swap happens meanwhile, the hint is merely less apt.
    """
    serving = slot.current
    if serving is None or serving.detector.metadata.input_size is None:
        return None
    return max(serving.detector.metadata.input_size)
