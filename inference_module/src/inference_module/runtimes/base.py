"""The one small interface every runtime implements, and what it returns.

A runtime turns an upright RGB image into raw detections (boxes as fractions of that image, scores,
model class ids); thresholds, label lookup and JSON shapes are shared code in `postprocess`.
Implementations are thread-safe: several pipeline threads call `detect` on one instance at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from edge_shared.reported import Runtime
from inference_module.errors import InsufficientMemoryError


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """What a runtime needs from the settings; built once per load."""

    ort_intra_op_threads: int = 1
    ort_inter_op_threads: int = 1
    tflite_threads: int = 1
    pipeline_threads: int = 2
    onnx_input_size: int = 416
    memory_budget_bytes: int | None = None
    """Memory the model's tensors may take (free memory less the reserve and its weights); None: unknown."""
    activation_factor: float = 16.0
    """Input tensor plus intermediates of one run, as a multiple of the input tensor's size."""


@dataclass(frozen=True, slots=True)
class RawDetections:
    """Model output before thresholds: K rows, boxes (y1, x1, y2, x2) in fractions, not yet clamped."""

    boxes: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    class_ids: npt.NDArray[np.int64]

    @classmethod
    def empty(cls) -> RawDetections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            class_ids=np.zeros((0,), np.int64),
        )


@dataclass(frozen=True, slots=True)
class EmbeddedLabels:
    """Class names a model file carries, unparsed: the label module parses them only when the package
    has no label file, so garbage metadata never blocks a model that ships a good label file."""

    source: str
    """Where they were found, as `GET /model` shows it (e.g. `ONNX metadata "names"`)."""
    kind: Literal["label-file", "names-literal"]
    data: bytes
    problem: str | None = None
    """Why the names cannot be used (e.g. two label files packed); raised only if they are needed."""


@dataclass(frozen=True, slots=True)
class DetectorMetadata:
    """What the model declares, read from it at load (never hard-coded)."""

    runtime: Runtime
    input_shape: tuple[int, ...]
    input_dtype: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_size: tuple[int, int] | None = None
    """Network width and height the image is resized to; lets JPEG decoding skip detail it would drop."""
    num_classes: int | None = None
    """Class ids the model can output (0..n-1, before a label file's offset); None when it cannot say."""
    embedded_labels: EmbeddedLabels | None = None


class Detector(Protocol):
    """A loaded model. `close` is called once, after the last in-flight `detect` returned."""

    @property
    def metadata(self) -> DetectorMetadata: ...

    def detect(self, image: Image.Image) -> RawDetections: ...

    def close(self) -> None: ...


class DetectorFactory(Protocol):
    """Loads and warms a model file; raises `ModelLoadError` when the file is not a usable detector."""

    def __call__(self, model_path: Path, options: RuntimeOptions) -> Detector: ...


def check_declared_memory(
    input_shape: Sequence[int], input_dtype: str | type[np.generic], options: RuntimeOptions
) -> None:
    """Refuse a model whose declared input would not fit, before any tensor is allocated.

    A few-kB model may declare a 10000×10000 input: each run then needs gigabytes that its file size
    does not show. Each pipeline thread runs the model with its own input and intermediate tensors,
    estimated as input bytes × `activation_factor`. Every runtime calls this between reading the
    model's signature and allocating (or warming) anything.
    """
    budget = options.memory_budget_bytes
    if budget is None:
        return
    input_bytes = math.prod(int(side) for side in input_shape) * np.dtype(input_dtype).itemsize
    needed = int(input_bytes * options.activation_factor) * max(1, options.pipeline_threads)
    if needed > budget:
        shape = "×".join(str(int(side)) for side in input_shape)
        raise InsufficientMemoryError(
            f"the model declares a {shape} input ({input_bytes} bytes): its tensors would need about "
            f"{needed} bytes for {options.pipeline_threads} pipeline threads, and {max(budget, 0)} are free"
        )
