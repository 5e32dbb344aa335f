"""ONNX Runtime backend for the ONNX model zoo's tiny-YOLOv3 interface (architecture §7; docs/inference.md).

Inputs: the image (float [1,3,H,W], RGB 0..1, letterboxed on grey 128) and `image_shape` ([1,2], the
original height and width). Outputs: boxes [1,N,4] y1,x1,y2,x2 in original pixels, scores [1,C,N] and
indices [1,M,3] or [M,3] of (batch, class, box). Tensors are told apart by rank, type and shape.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

from inference_module.errors import ModelLoadError
from inference_module.runtimes.base import (
    Detector,
    DetectorMetadata,
    RawDetections,
    RuntimeOptions,
    check_declared_memory,
)
from inference_module.runtimes.geometry import letterbox_into
from inference_module.runtimes.onnx_session import embedded_names, open_session

logger = logging.getLogger(__name__)

_GREY = np.float32(128 / 255)


class OnnxYoloDetector:
    """One `InferenceSession` shared by all pipeline threads (`run` is thread-safe); per-thread buffers."""

    def __init__(self, session: ort.InferenceSession, options: RuntimeOptions) -> None:
        self._session: ort.InferenceSession | None = session
        inputs = session.get_inputs()
        images = [item for item in inputs if len(item.shape) == 4]
        shapes = [item for item in inputs if len(item.shape) == 2]
        if len(inputs) != 2 or len(images) != 1 or len(shapes) != 1:
            raise ModelLoadError(
                "ONNX model does not have the tiny-YOLOv3 inputs (an image [1,3,H,W] and image_shape [1,2])"
            )
        self._image_input = images[0].name
        self._shape_input = shapes[0].name
        height, width = images[0].shape[2], images[0].shape[3]
        # The zoo model declares symbolic H/W; the configured size applies then.
        self._height = height if isinstance(height, int) and height > 0 else options.onnx_input_size
        self._width = width if isinstance(width, int) and width > 0 else options.onnx_input_size
        self._boxes_out, self._scores_out, self._indices_out = _output_names(session)
        self._local = threading.local()
        self._metadata = DetectorMetadata(
            runtime="onnx",
            input_shape=(1, 3, self._height, self._width),
            input_dtype="float32",
            input_names=(self._image_input, self._shape_input),
            output_names=(self._boxes_out, self._scores_out, self._indices_out),
            input_size=(self._width, self._height),
            num_classes=_class_count(session, self._scores_out),
            embedded_labels=embedded_names(session),
        )
        self._outputs = [self._boxes_out, self._scores_out, self._indices_out]

    @property
    def metadata(self) -> DetectorMetadata:
        return self._metadata

    def _buffers(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Input tensors reused by this thread: no allocation per request."""
        local = self._local
        buffers: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = getattr(
            local, "buffers", None
        )
        if buffers is None:
            buffers = (
                np.full((1, 3, self._height, self._width), _GREY, dtype=np.float32),
                np.zeros((1, 2), dtype=np.float32),
            )
            local.buffers = buffers
        return buffers

    def preprocess(self, image: Image.Image) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Letterbox into this thread's input buffer: aspect kept, centred, grey 128 around."""
        tensor, shape = self._buffers()
        letterbox_into(tensor, image, _GREY)
        shape[0, 0], shape[0, 1] = image.height, image.width
        return tensor, shape

    def detect(self, image: Image.Image) -> RawDetections:
        tensor, shape = self.preprocess(image)
        session = self._session
        if session is None:
            raise RuntimeError("detect() after close()")
        boxes, scores, indices = session.run(
            self._outputs, {self._image_input: tensor, self._shape_input: shape}
        )
        return decode_yolo_outputs(boxes, scores, indices, image.size)

    def close(self) -> None:
        # Dropping the session frees its arena; nothing else holds native memory.
        self._session = None


def decode_yolo_outputs(
    boxes: npt.NDArray[Any], scores: npt.NDArray[Any], indices: npt.NDArray[Any], size: tuple[int, int]
) -> RawDetections:
    """Pick each selected (batch, class, box) triple's score and box; boxes to fractions of `size`."""
    triples = np.asarray(indices).reshape(-1, 3).astype(np.int64, copy=False)
    if triples.shape[0] == 0:
        return RawDetections.empty()
    batch, classes, box_ids = triples[:, 0], triples[:, 1], triples[:, 2]
    width, height = size
    picked = boxes[batch, box_ids].astype(np.float32, copy=True)
    picked /= np.array([height, width, height, width], dtype=np.float32)
    return RawDetections(
        boxes=picked, scores=scores[batch, classes, box_ids].astype(np.float32), class_ids=classes
    )


def _output_names(session: ort.InferenceSession) -> tuple[str, str, str]:
    outputs = session.get_outputs()
    if len(outputs) != 3:
        raise ModelLoadError("ONNX model does not have the tiny-YOLOv3 outputs (boxes, scores, indices)")
    integer = [item for item in outputs if "int" in item.type]
    floats = [item for item in outputs if "float" in item.type]
    if len(integer) != 1 or len(floats) != 2:
        raise ModelLoadError("ONNX model outputs are not two float tensors and one integer indices tensor")
    boxes = [item for item in floats if len(item.shape) == 3 and item.shape[2] == 4]
    # A scores tensor can also end in 4 (4 anchors); then the declared order (boxes first) decides.
    chosen = boxes[0] if len(boxes) == 1 else floats[0]
    scores = floats[1] if chosen is floats[0] else floats[0]
    return chosen.name, scores.name, integer[0].name


def _class_count(session: ort.InferenceSession, scores_name: str) -> int | None:
    """C of the scores tensor [1,C,N]; None when the export leaves it symbolic."""
    (scores,) = [item for item in session.get_outputs() if item.name == scores_name]
    count = scores.shape[1] if len(scores.shape) == 3 else None
    return count if isinstance(count, int) and count > 0 else None


def tiny_yolo_from_session(session: ort.InferenceSession, options: RuntimeOptions) -> OnnxYoloDetector:
    """Check the interface of an open session, warm it up once."""
    detector = OnnxYoloDetector(session, options)
    check_declared_memory(detector.metadata.input_shape, np.float32, options)
    warm_up(detector)
    return detector


def load_onnx_yolo(model_path: Path, options: RuntimeOptions) -> OnnxYoloDetector:
    """Create the session with the configured threads, check the interface, warm it up once."""
    return tiny_yolo_from_session(open_session(model_path, options), options)


def warm_up(detector: Detector) -> None:
    """One inference at load, so the first request does not pay for allocations and kernel selection."""
    _, _, height, width = detector.metadata.input_shape
    try:
        detector.detect(Image.new("RGB", (width, height)))
    except Exception as exc:
        raise ModelLoadError(f"warm-up inference failed: {exc}") from exc
