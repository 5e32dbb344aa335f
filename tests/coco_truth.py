"""Where the objects are in the three scikit-image photographs, as a person marks them (pixels, left,
top, right, bottom), and the checks both the in-process and the whole-stack tests of the real COCO
detectors apply: the best detection names the object, and its box covers it."""

from __future__ import annotations

from typing import Any

#: image id → (expected best label, truth box in pixels, image width, height)
PHOTOS: dict[str, tuple[str, tuple[float, float, float, float], int, int]] = {
    "chelsea-png": ("cat", (0, 0, 425, 300), 451, 300),  # the cat fills the left nine tenths
    "coffee-png": ("cup", (165, 10, 415, 320), 600, 400),  # cup on its saucer, top centre
    "astronaut-png": ("person", (0, 0, 370, 512), 512, 512),  # Eileen Collins, head to the frame's foot
}
MIN_IOU = 0.6


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def best_in_pixels(body: dict[str, Any], width: int, height: int) -> tuple[str, float, tuple[float, ...]]:
    """The best detection of a native `/score` body: label, score, box (left, top, right, bottom) px."""
    best = max(body["detections"], key=lambda item: item["score"])
    box = best["box"]
    pixels = (
        box["left"] * width,
        box["top"] * height,
        (box["left"] + box["width"]) * width,
        (box["top"] + box["height"]) * height,
    )
    return best["label"], best["score"], pixels


def assert_found(body: dict[str, Any], image_id: str) -> None:
    label, box, width, height = PHOTOS[image_id]
    found, score, pixels = best_in_pixels(body, width, height)
    assert (found, body["image"]) == (label, {"width": width, "height": height}), body
    assert score >= 0.5, body
    overlap = iou(pixels, box)  # type: ignore[arg-type]
    assert overlap >= MIN_IOU, f"{image_id}: best box {pixels} overlaps the {label} by only {overlap:.2f}"
