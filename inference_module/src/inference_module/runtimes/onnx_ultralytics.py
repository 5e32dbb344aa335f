"""ONNX Runtime backend for Ultralytics YOLO detection exports: YOLOv8 and YOLO11 (`yolov8`), YOLOv5
(`yolov5`).

Input: one image tensor [1,3,H,W], float32 (or float16), RGB 0..1, letterboxed: aspect kept, centred,
padded with grey 114. Output: one tensor, in one of two layouts (C classes, N anchors):

- `yolov8` [1, 4+C, N]: per anchor cx, cy, w, h in input pixels, then C class scores (no objectness);
- `yolov5` [1, N, 5+C]: cx, cy, w, h, an objectness score, then C class scores; score = obj × class.

Decoding: each anchor's best class, candidates scoring at least `CANDIDATE_FLOOR`, class-aware NMS at IoU
`NMS_IOU_THRESHOLD` keeping at most `MAX_DETECTIONS`, boxes mapped back through the letterbox. Class
names usually come from the export's `metadata_props["names"]`.
"""

from __future__ import annotations

import ast
import logging
import threading
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

from inference_module.errors import ModelLoadError
from inference_module.runtimes.base import (
    DetectorMetadata,
    RawDetections,
    RuntimeOptions,
    check_declared_memory,
)
from inference_module.runtimes.geometry import Letterbox, class_aware_nms, letterbox_into
from inference_module.runtimes.onnx_session import custom_metadata, embedded_names
from inference_module.runtimes.onnx_yolo import warm_up

__all__ = [
    "CANDIDATE_FLOOR",
    "MAX_DETECTIONS",
    "NMS_IOU_THRESHOLD",
    "Layout",
    "UltralyticsDetector",
    "decode_ultralytics",
    "layout_of",
    "ultralytics_from_session",
]

logger = logging.getLogger(__name__)

Layout = Literal["yolov8", "yolov5"]
CANDIDATE_FLOOR = 0.01
"""Anchors below this never enter NMS (Ultralytics validates at 0.001 and predicts at 0.25)."""
NMS_IOU_THRESHOLD = 0.45
MAX_DETECTIONS = 300
"""Ultralytics' own `max_det`."""
_PAD = np.float32(114 / 255)
_BOX = 4


def _dims(shape: Sequence[Any]) -> tuple[int, ...] | None:
    """Concrete dimensions, or None when any is symbolic."""
    if not all(isinstance(dim, int) and dim > 0 for dim in shape):
        return None
    return tuple(int(dim) for dim in shape)


def layout_of(input_shape: Sequence[Any], output_shape: Sequence[Any]) -> Layout | None:
    """The layout an image input [1,3,H,W] and one output [1,A,B] have, None when neither fits.

    `[1, 4+C, N]` has far fewer rows than anchors, `[1, N, 5+C]` far more: the smaller side holds the
    box and class values.
    """
    if len(input_shape) != 4 or input_shape[1] not in (3, "3") or len(output_shape) != 3:
        return None
    dims = _dims(output_shape)
    if dims is None or dims[0] != 1:
        return None
    rows, columns = dims[1], dims[2]
    if _BOX < rows < columns:
        return "yolov8"
    if _BOX + 1 < columns < rows:
        return "yolov5"
    return None


def decode_ultralytics(
    output: npt.NDArray[Any],
    layout: Layout,
    box: Letterbox,
    *,
    floor: float = CANDIDATE_FLOOR,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    max_detections: int = MAX_DETECTIONS,
) -> RawDetections:
    """Raw output [1,4+C,N] or [1,N,5+C] → detections in fractions of the original image."""
    rows = output[0].T if layout == "yolov8" else output[0]
    rows = rows.astype(np.float32, copy=False)
    if layout == "yolov8":
        class_scores = rows[:, _BOX:]
        objectness = None
    else:
        class_scores = rows[:, _BOX + 1 :]
        objectness = rows[:, _BOX]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(rows.shape[0]), class_ids]
    if objectness is not None:
        scores = scores * objectness
    keep = np.flatnonzero(scores >= floor)
    if keep.size == 0:
        return RawDetections.empty()
    cx, cy, w, h = (rows[keep, i] for i in range(_BOX))
    input_boxes = np.stack(
        [
            (cy - h / 2) / box.input_height,
            (cx - w / 2) / box.input_width,
            (cy + h / 2) / box.input_height,
            (cx + w / 2) / box.input_width,
        ],
        axis=1,
    ).astype(np.float32)
    kept_scores = scores[keep].astype(np.float32)
    kept_classes = class_ids[keep].astype(np.int64)
    chosen = class_aware_nms(input_boxes, kept_scores, kept_classes, iou_threshold, max_detections)
    return RawDetections(
        boxes=box.unmap(input_boxes[chosen]),
        scores=np.clip(kept_scores[chosen], 0.0, 1.0),
        class_ids=kept_classes[chosen],
    )


class UltralyticsDetector:
    """One shared session (thread-safe `run`), one input buffer per pipeline thread."""

    def __init__(
        self, session: ort.InferenceSession, options: RuntimeOptions, expected: Layout | None
    ) -> None:
        self._session: ort.InferenceSession | None = session
        inputs, outputs = session.get_inputs(), session.get_outputs()
        signature = f"inputs {[list(i.shape) for i in inputs]}, outputs {[list(o.shape) for o in outputs]}"
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(
                "not an Ultralytics YOLO detection export (one image input, one output "
                f"[1,4+C,N] or [1,N,5+C]); this model has {signature}"
            )
        metadata = custom_metadata(session)
        task = metadata.get("task")
        if task is not None and task != "detect":
            raise ModelLoadError(f"Ultralytics {task!r} exports are not supported, only 'detect'")
        image, output = inputs[0], outputs[0]
        self._height, self._width = _input_size(image.shape, metadata, options)
        layout = layout_of([1, 3, self._height, self._width], output.shape)
        if layout is None or (expected is not None and layout != expected):
            wanted = {"yolov8": "[1,4+C,N]", "yolov5": "[1,N,5+C]", None: "[1,4+C,N] or [1,N,5+C]"}[expected]
            raise ModelLoadError(f"the output {list(output.shape)} is not the Ultralytics layout {wanted}")
        self._layout: Layout = layout
        if image.type not in ("tensor(float)", "tensor(float16)"):
            raise ModelLoadError(f"the image input is {image.type}, not float32 or float16")
        self._dtype = np.float16 if image.type == "tensor(float16)" else np.float32
        dims = _dims(output.shape)
        assert dims is not None  # layout_of accepted only concrete dims
        classes = dims[1] - _BOX if layout == "yolov8" else dims[2] - _BOX - 1
        self._input_name, self._output_name = image.name, output.name
        self._local = threading.local()
        self._metadata = DetectorMetadata(
            runtime="onnx",
            input_shape=(1, 3, self._height, self._width),
            input_dtype=np.dtype(self._dtype).name,
            input_names=(image.name,),
            output_names=(output.name,),
            input_size=(self._width, self._height),
            num_classes=classes,
            embedded_labels=embedded_names(session),
        )

    @property
    def metadata(self) -> DetectorMetadata:
        return self._metadata

    @property
    def layout(self) -> Layout:
        return self._layout

    def _buffer(self) -> npt.NDArray[np.float32]:
        buffer: npt.NDArray[np.float32] | None = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = np.full((1, 3, self._height, self._width), _PAD, dtype=np.float32)
            self._local.buffer = buffer
        return buffer

    def detect(self, image: Image.Image) -> RawDetections:
        tensor = self._buffer()
        box = letterbox_into(tensor, image, _PAD)
        session = self._session
        if session is None:
            raise RuntimeError("detect() after close()")
        feed = tensor if self._dtype == np.float32 else tensor.astype(self._dtype)
        (output,) = session.run([self._output_name], {self._input_name: feed})
        return decode_ultralytics(np.asarray(output), self._layout, box)

    def close(self) -> None:
        self._session = None


def _input_size(shape: Sequence[Any], metadata: dict[str, str], options: RuntimeOptions) -> tuple[int, int]:
    """(H, W) from the input shape; for a dynamic export, from its `imgsz` metadata or the setting."""
    if len(shape) != 4:
        raise ModelLoadError(f"the image input {list(shape)} is not [1,3,H,W]")
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return height, width
    try:
        size = ast.literal_eval(metadata.get("imgsz", "None"))
    except (ValueError, SyntaxError):
        size = None
    if isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        return int(size[0]), int(size[1])
    return options.onnx_input_size, options.onnx_input_size


def ultralytics_from_session(
    session: ort.InferenceSession, options: RuntimeOptions, expected: Layout | None = None
) -> UltralyticsDetector:
    """Check the export, warm it up once; `expected` is the layout `model.json` named, if any."""
    detector = UltralyticsDetector(session, options, expected)
    check_declared_memory(detector.metadata.input_shape, np.float32, options)
    warm_up(detector)
    return detector
