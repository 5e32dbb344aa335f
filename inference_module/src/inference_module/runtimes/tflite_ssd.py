"""TFLite backend for the TF detection zoo's SSD interface (architecture §7; docs/inference.md).

Input [1,H,W,3], uint8 (quantised: raw pixels) or float32 (scaled to [-1,1]), the image resized to
H×W. Outputs of `TFLite_Detection_PostProcess`: boxes [1,K,4] ymin,xmin,ymax,xmax normalised,
classes [1,K], scores [1,K], count [1]. An interpreter is not thread-safe, so each pipeline thread
borrows one from a small pool.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from inference_module.errors import ModelLoadError
from inference_module.resize import resize_rgb
from inference_module.runtimes.base import DetectorMetadata, EmbeddedLabels, RawDetections, RuntimeOptions
from inference_module.runtimes.tflite_metadata import embedded_label_file
from inference_module.runtimes.tflite_pool import InterpreterPool, open_interpreters, warm_up

logger = logging.getLogger(__name__)

_SUFFIX = re.compile(r":(\d+)$")


class TfliteSsdDetector:
    """A pool of identical interpreters, one per pipeline thread."""

    def __init__(self, interpreters: list[Any], embedded_labels: EmbeddedLabels | None = None) -> None:
        first = interpreters[0]
        inputs = first.get_input_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or int(inputs[0]["shape"][3]) != 3:
            raise ModelLoadError("TFLite model does not have one image input [1,H,W,3]")
        detail = inputs[0]
        self._input_index = int(detail["index"])
        self._dtype = np.dtype(detail["dtype"])
        if self._dtype not in (np.uint8, np.float32):
            raise ModelLoadError(f"TFLite input type {self._dtype} is not supported (uint8 or float32)")
        self._height, self._width = int(detail["shape"][1]), int(detail["shape"][2])
        self._boxes, self._classes, self._scores, self._count = _output_indices(first.get_output_details())
        self._local = threading.local()
        self._pool = InterpreterPool(interpreters)
        names = {int(item["index"]): str(item["name"]) for item in first.get_output_details()}
        self._metadata = DetectorMetadata(
            runtime="tflite",
            input_shape=(1, self._height, self._width, 3),
            input_dtype=str(self._dtype),
            input_names=(str(detail["name"]),),
            output_names=tuple(names[i] for i in (self._boxes, self._classes, self._scores, self._count)),
            input_size=(self._width, self._height),
            num_classes=_class_count(first),
            embedded_labels=embedded_labels,
        )

    @property
    def metadata(self) -> DetectorMetadata:
        return self._metadata

    def preprocess(self, image: Image.Image) -> npt.NDArray[Any]:
        pixels = resize_rgb(np.asarray(image), self._width, self._height)[None]
        if self._dtype == np.uint8:
            return pixels
        # float models take [-1, 1]: x / 127.5 - 1, into this thread's reused buffer
        scaled: npt.NDArray[np.float32] | None = getattr(self._local, "scaled", None)
        if scaled is None:
            scaled = np.empty((1, self._height, self._width, 3), np.float32)
            self._local.scaled = scaled
        np.multiply(pixels, np.float32(1 / 127.5), out=scaled)
        scaled -= np.float32(1.0)
        return scaled

    def detect(self, image: Image.Image) -> RawDetections:
        tensor = self.preprocess(image)
        with self._pool.borrow() as interpreter:
            interpreter.set_tensor(self._input_index, tensor)
            interpreter.invoke()
            boxes = interpreter.get_tensor(self._boxes)
            classes = interpreter.get_tensor(self._classes)
            scores = interpreter.get_tensor(self._scores)
            count = interpreter.get_tensor(self._count)
        kept = max(0, min(int(np.asarray(count).reshape(-1)[0]), boxes.shape[1]))
        return RawDetections(
            boxes=boxes[0, :kept].astype(np.float32),
            scores=np.clip(scores[0, :kept], 0.0, 1.0).astype(np.float32),
            class_ids=np.rint(classes[0, :kept]).astype(np.int64),
        )

    def close(self) -> None:
        self._pool.close()


def _output_indices(details: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    """Boxes by shape [1,K,4], count by size 1; classes before scores by `:n` suffix, else by order."""
    if len(details) != 4:
        raise ModelLoadError("TFLite model does not have the four SSD post-processing outputs")
    boxes = [d for d in details if len(d["shape"]) == 3 and int(d["shape"][2]) == 4]
    counts = [d for d in details if int(np.prod(d["shape"])) == 1]
    if len(boxes) != 1 or len(counts) != 1:
        raise ModelLoadError("TFLite outputs are not boxes [1,K,4], classes, scores and count [1]")
    rest = [d for d in details if d is not boxes[0] and d is not counts[0]]
    suffixes = [_SUFFIX.search(str(d["name"])) for d in rest]
    if all(suffixes):
        rest.sort(key=lambda d: int(_SUFFIX.search(str(d["name"])).group(1)))  # type: ignore[union-attr]
    classes, scores = rest
    return int(boxes[0]["index"]), int(classes["index"]), int(scores["index"]), int(counts[0]["index"])


def _class_count(interpreter: Any) -> int | None:
    """Classes the post-processing op scores, background excluded: its class-predictions input is
    [1, anchors, classes + 1]. None when the interpreter cannot list its ops."""
    try:
        ops = [op for op in interpreter._get_ops_details() if op["op_name"] == "TFLite_Detection_PostProcess"]
        shapes = {int(t["index"]): t["shape"] for t in interpreter.get_tensor_details()}
        shape = shapes[int(ops[0]["inputs"][1])] if len(ops) == 1 else None
    except (AttributeError, LookupError, TypeError, ValueError):  # an engine without the private listing
        return None
    if shape is None or len(shape) != 3 or int(shape[2]) < 2:
        return None
    return int(shape[2]) - 1


def load_tflite_ssd(model_path: Path, options: RuntimeOptions) -> TfliteSsdDetector:
    """One interpreter per pipeline thread, each allocated and warmed once."""
    interpreters = open_interpreters(model_path, options)
    detector = TfliteSsdDetector(interpreters, embedded_label_file(model_path))
    warm_up(detector, len(interpreters))
    return detector
