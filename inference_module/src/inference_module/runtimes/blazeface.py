"""TFLite backend for MediaPipe's BlazeFace short-range face detector (docs/inference.md).

The model has no post-processing op: it outputs, per SSD anchor, 16 regressors (box centre offset and
size in input pixels, then 6 keypoints) and one classifier logit. Decoding follows MediaPipe's
face-detection graph: anchors generated from the SSD anchor options (never a shipped table), linear box
size (not exp), sigmoid scores of logits clipped to ±100, weighted NMS at IoU 0.3. The input is the image
letterboxed into the model's square with a zero (black) border and scaled to [-1, 1]; boxes are mapped
back through that letterbox to fractions of the original image. Tensor names and shapes come from the
model; the anchor count must match its regressor rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from inference_module.errors import ModelLoadError
from inference_module.runtimes.base import DetectorMetadata, EmbeddedLabels, RawDetections, RuntimeOptions
from inference_module.runtimes.geometry import Letterbox, iou
from inference_module.runtimes.tflite_metadata import embedded_label_file
from inference_module.runtimes.tflite_pool import Interpreter, InterpreterPool, open_interpreters, warm_up

__all__ = [
    "MIN_CANDIDATE_SCORE",
    "NMS_IOU_THRESHOLD",
    "SHORT_RANGE_ANCHORS",
    "AnchorOptions",
    "BlazeFaceDetector",
    "Letterbox",
    "decode_detections",
    "letterbox",
    "load_blazeface",
    "is_blazeface_model",
    "matches_signature",
    "sigmoid",
    "ssd_anchors",
    "weighted_nms",
]

logger = logging.getLogger(__name__)

MIN_CANDIDATE_SCORE = 0.5
"""MediaPipe's `min_score_thresh`: anchors below it never enter NMS (lower request thresholds add nothing)."""
NMS_IOU_THRESHOLD = 0.3
"""MediaPipe's `min_suppression_threshold` for the face graph."""
MAX_FACES = 100
"""Bound on NMS rounds (each round emits one face)."""
_LOGIT_CLIP = 100.0
_BOX_COORDS = 4


@dataclass(frozen=True, slots=True)
class AnchorOptions:
    """The SSD anchor options of MediaPipe's `SsdAnchorsCalculator`, fixed-size anchors only.

    Consecutive layers with the same stride share one feature map; each layer puts one anchor per
    aspect ratio on every cell, plus one for the interpolated scale when that ratio is positive. With
    `fixed_anchor_size` (the only mode BlazeFace uses) every anchor is 1×1, so scales do not matter.
    """

    strides: tuple[int, ...]
    offset: float
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0

    @property
    def anchors_per_layer(self) -> int:
        return len(self.aspect_ratios) + (1 if self.interpolated_scale_aspect_ratio > 0 else 0)


SHORT_RANGE_ANCHORS = AnchorOptions(strides=(8, 16, 16, 16), offset=0.5)
"""`face_detection_short_range`: 16×16×2 + 8×8×6 = 896 anchors for a 128×128 input."""


def ssd_anchors(input_height: int, input_width: int, options: AnchorOptions) -> npt.NDArray[np.float32]:
    """Anchors [N, 4] as (x_center, y_center, width, height) fractions, in the model's output order.

    Order: per group of equal strides, row by row, column by column, then the group's anchors per cell.
    """
    rows: list[npt.NDArray[np.float32]] = []
    layer = 0
    while layer < len(options.strides):
        stride = options.strides[layer]
        group = 1
        while layer + group < len(options.strides) and options.strides[layer + group] == stride:
            group += 1
        grid_h, grid_w = math.ceil(input_height / stride), math.ceil(input_width / stride)
        per_cell = group * options.anchors_per_layer
        ys, xs = np.meshgrid(
            (np.arange(grid_h, dtype=np.float32) + options.offset) / grid_h,
            (np.arange(grid_w, dtype=np.float32) + options.offset) / grid_w,
            indexing="ij",
        )
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres = np.repeat(centres, per_cell, axis=0)
        rows.append(np.concatenate([centres, np.ones_like(centres)], axis=1))
        layer += group
    return np.concatenate(rows, axis=0).astype(np.float32)


def letterbox(
    image: Image.Image, input_width: int, input_height: int
) -> tuple[npt.NDArray[np.float32], Letterbox]:
    """The input tensor [1, H, W, 3] in [-1, 1] (black border = -1) and where the image went.

    Bilinear resize, as MediaPipe's image-to-tensor step; the border is zero in pixel space.
    """
    box = Letterbox.fit(image.width, image.height, input_width, input_height)
    canvas = Image.new("RGB", (input_width, input_height))
    size = (box.width, box.height)
    resized = image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)
    canvas.paste(resized, (box.left, box.top))
    pixels = np.asarray(canvas, dtype=np.float32)[None]
    return pixels * np.float32(1 / 127.5) - np.float32(1.0), box


def sigmoid(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """sigmoid(clip(logit, ±100)); the tanh form never overflows."""
    clipped = np.clip(logits.astype(np.float32), -_LOGIT_CLIP, _LOGIT_CLIP)
    result: npt.NDArray[np.float32] = np.float32(0.5) * (np.float32(1.0) + np.tanh(np.float32(0.5) * clipped))
    return result


def weighted_nms(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    iou_threshold: float,
    max_output: int = MAX_FACES,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """MediaPipe's weighted NMS: the best box and all it overlaps by more than `iou_threshold` become
    one box, their score-weighted mean, with the best score. Boxes are (y1, x1, y2, x2)."""
    remaining = np.argsort(-scores, kind="stable")
    kept_boxes: list[npt.NDArray[np.float32]] = []
    kept_scores: list[float] = []
    while remaining.size and len(kept_boxes) < max_output:
        best = remaining[0]
        overlapping = iou(boxes[best], boxes[remaining]) > iou_threshold
        overlapping[0] = True  # a degenerate best box still forms its own cluster
        cluster = remaining[overlapping]
        weights = scores[cluster]
        kept_boxes.append((boxes[cluster] * weights[:, None]).sum(axis=0) / weights.sum())
        kept_scores.append(float(scores[best]))
        remaining = remaining[~overlapping]
    if not kept_boxes:
        return np.zeros((0, _BOX_COORDS), np.float32), np.zeros((0,), np.float32)
    return np.stack(kept_boxes).astype(np.float32), np.asarray(kept_scores, np.float32)


def decode_detections(
    regressors: npt.NDArray[np.float32],
    logits: npt.NDArray[np.float32],
    anchors: npt.NDArray[np.float32],
    box: Letterbox,
    *,
    min_score: float = MIN_CANDIDATE_SCORE,
    iou_threshold: float = NMS_IOU_THRESHOLD,
) -> RawDetections:
    """Raw outputs ([N, ≥4] regressors x, y, w, h in input pixels; [N] logits) → faces in image fractions."""
    scores = sigmoid(logits.reshape(-1))
    candidates = np.flatnonzero(scores >= min_score)
    if candidates.size == 0:
        return RawDetections.empty()
    raw = regressors[candidates, :_BOX_COORDS]
    anchor = anchors[candidates]
    # Linear size: the centre offset and the size are in input pixels, relative to a 1×1 anchor.
    cx = raw[:, 0] / box.input_width * anchor[:, 2] + anchor[:, 0]
    cy = raw[:, 1] / box.input_height * anchor[:, 3] + anchor[:, 1]
    half_w = raw[:, 2] / box.input_width * anchor[:, 2] / 2
    half_h = raw[:, 3] / box.input_height * anchor[:, 3] / 2
    decoded = np.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], axis=1).astype(np.float32)
    merged, merged_scores = weighted_nms(decoded, scores[candidates], iou_threshold)
    return RawDetections(
        boxes=box.unmap(merged),
        scores=merged_scores,
        class_ids=np.zeros((merged_scores.size,), np.int64),
    )


@dataclass(frozen=True, slots=True)
class _Layout:
    input_index: int
    input_name: str
    height: int
    width: int
    regressors_index: int
    regressors_name: str
    scores_index: int
    scores_name: str
    anchors: int


def _layout(inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> _Layout:
    """One float32 image [1,H,W,3]; outputs told apart by shape: [1,N,1] logits, [1,N,≥4] regressors."""
    if len(inputs) != 1:
        raise ModelLoadError("BlazeFace model must have one input")
    shape = [int(v) for v in inputs[0]["shape"]]
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or np.dtype(inputs[0]["dtype"]) != np.float32:
        raise ModelLoadError(f"BlazeFace input must be float32 [1,H,W,3], not {shape}")
    if len(outputs) != 2:
        raise ModelLoadError("BlazeFace model must have two outputs (regressors, classificators)")
    shapes = [[int(v) for v in item["shape"]] for item in outputs]
    if any(len(s) != 3 or s[0] != 1 for s in shapes) or shapes[0][1] != shapes[1][1]:
        raise ModelLoadError(f"BlazeFace outputs must be [1,N,K] and [1,N,1], not {shapes}")
    logits = [i for i, s in enumerate(shapes) if s[2] == 1]
    boxes = [i for i, s in enumerate(shapes) if s[2] >= _BOX_COORDS]
    if len(logits) != 1 or len(boxes) != 1:
        raise ModelLoadError(f"BlazeFace outputs must be [1,N,≥4] regressors and [1,N,1] scores: {shapes}")
    regressors, scores = outputs[boxes[0]], outputs[logits[0]]
    return _Layout(
        input_index=int(inputs[0]["index"]),
        input_name=str(inputs[0]["name"]),
        height=shape[1],
        width=shape[2],
        regressors_index=int(regressors["index"]),
        regressors_name=str(regressors["name"]),
        scores_index=int(scores["index"]),
        scores_name=str(scores["name"]),
        anchors=shapes[0][1],
    )


def matches_signature(inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> bool:
    """True for an interpreter's input/output details with BlazeFace's tensors and anchor count.

    For family selection: `matches_signature(i.get_input_details(), i.get_output_details())`.
    """
    try:
        layout = _layout(inputs, outputs)
    except ModelLoadError:
        return False
    return len(ssd_anchors(layout.height, layout.width, SHORT_RANGE_ANCHORS)) == layout.anchors


def is_blazeface_model(model_path: Path) -> bool:
    """Whether a .tflite file has BlazeFace's signature; False for anything TFLite cannot open."""
    try:
        interpreter = Interpreter(model_path=str(model_path))
    except (ValueError, RuntimeError):
        return False
    return matches_signature(interpreter.get_input_details(), interpreter.get_output_details())


class BlazeFaceDetector:
    """A pool of identical interpreters, one per pipeline thread; decoding is pure numpy."""

    def __init__(
        self,
        interpreters: list[Any],
        anchor_options: AnchorOptions = SHORT_RANGE_ANCHORS,
        embedded_labels: EmbeddedLabels | None = None,
    ) -> None:
        first = interpreters[0]
        self._layout = _layout(first.get_input_details(), first.get_output_details())
        self._anchors = ssd_anchors(self._layout.height, self._layout.width, anchor_options)
        if len(self._anchors) != self._layout.anchors:
            raise ModelLoadError(
                f"the model has {self._layout.anchors} anchors, the BlazeFace anchor options give "
                f"{len(self._anchors)} for a {self._layout.width}×{self._layout.height} input"
            )
        self._pool = InterpreterPool(interpreters)
        self._metadata = DetectorMetadata(
            runtime="tflite",
            input_shape=(1, self._layout.height, self._layout.width, 3),
            input_dtype="float32",
            input_names=(self._layout.input_name,),
            output_names=(self._layout.regressors_name, self._layout.scores_name),
            num_classes=1,
            embedded_labels=embedded_labels,
        )

    @property
    def metadata(self) -> DetectorMetadata:
        return self._metadata

    @property
    def anchors(self) -> npt.NDArray[np.float32]:
        """(x_center, y_center, width, height) per anchor, fractions of the input; a copy."""
        return self._anchors.copy()

    def detect(self, image: Image.Image) -> RawDetections:
        tensor, box = letterbox(image, self._layout.width, self._layout.height)
        with self._pool.borrow() as interpreter:
            interpreter.set_tensor(self._layout.input_index, tensor)
            interpreter.invoke()
            regressors = interpreter.get_tensor(self._layout.regressors_index)[0]
            logits = interpreter.get_tensor(self._layout.scores_index)[0, :, 0]
        return decode_detections(regressors, logits, self._anchors, box)

    def close(self) -> None:
        self._pool.close()


def load_blazeface(model_path: Path, options: RuntimeOptions) -> BlazeFaceDetector:
    """One interpreter per pipeline thread, each allocated and warmed once."""
    interpreters = open_interpreters(model_path, options)
    detector = BlazeFaceDetector(interpreters, embedded_labels=embedded_label_file(model_path))
    warm_up(detector, len(interpreters))
    logger.info(
        "BlazeFace model loaded: %d anchors, %d interpreters", len(detector.anchors), len(interpreters)
    )
    return detector
