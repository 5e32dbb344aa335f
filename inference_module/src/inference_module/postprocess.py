"""From raw model output to the response: clamp, threshold, sort, cap, label; then JSON bytes.

Pure functions; the JSON is serialised here (in the pipeline thread) so the event loop only sends bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic_core import to_json

from inference_module.labels import Labels
from inference_module.runtimes.base import RawDetections

ResponseFormat = Literal["native", "ava"]
_DIGITS = 6


@dataclass(frozen=True, slots=True)
class Detection:
    """One detection with its box as fractions of the original image: left, top, width, height."""

    label: str
    class_id: int
    score: float
    left: float
    top: float
    width: float
    height: float


def select_detections(
    raw: RawDetections, labels: Labels, *, threshold: float, max_detections: int
) -> list[Detection]:
    """Keep scores ≥ threshold, best first, at most `max_detections`; boxes clamped to [0, 1]."""
    scores = np.clip(raw.scores, 0.0, 1.0)
    keep = np.flatnonzero(scores >= threshold)
    if keep.size == 0 or max_detections <= 0:
        return []
    order = keep[np.argsort(-scores[keep], kind="stable")][:max_detections]
    boxes = np.clip(raw.boxes[order], 0.0, 1.0)
    top, left = boxes[:, 0], boxes[:, 1]
    height = np.maximum(boxes[:, 2] - top, 0.0)
    width = np.maximum(boxes[:, 3] - left, 0.0)
    result = []
    for row, index in enumerate(order.tolist()):
        class_id = int(raw.class_ids[index]) + labels.offset
        result.append(
            Detection(
                label=labels.name(class_id),
                class_id=class_id,
                score=round(float(scores[index]), _DIGITS),
                left=round(float(left[row]), _DIGITS),
                top=round(float(top[row]), _DIGITS),
                width=round(float(width[row]), _DIGITS),
                height=round(float(height[row]), _DIGITS),
            )
        )
    return result


def native_body(
    detections: Sequence[Detection],
    *,
    version: str,
    runtime: str,
    size: tuple[int, int],
    inference_ms: float,
) -> dict[str, Any]:
    """Design §7 native shape (`edge_shared.scoring.ScoreResponse`)."""
    return {
        "model": {"version": version, "runtime": runtime},
        "image": {"width": size[0], "height": size[1]},
        "detections": [
            {
                "label": item.label,
                "class_id": item.class_id,
                "score": item.score,
                "box": {"left": item.left, "top": item.top, "width": item.width, "height": item.height},
            }
            for item in detections
        ],
        "inference_ms": round(inference_ms, 3),
    }


def ava_body(detections: Sequence[Detection]) -> dict[str, Any]:
    """Azure Video Analyzer HTTP-extension shape (`edge_shared.scoring.AvaScoreResponse`)."""
    return {
        "inferences": [
            {
                "type": "entity",
                "entity": {
                    "tag": {"value": item.label, "confidence": item.score},
                    "box": {"l": item.left, "t": item.top, "w": item.width, "h": item.height},
                },
            }
            for item in detections
        ]
    }


def to_json_bytes(body: dict[str, Any]) -> bytes:
    return to_json(body)
