"""Which detector family a model file belongs to, and the factory that loads it.

The file extension picks the engine (`onnx`, `tflite`); within one engine several model interfaces
exist, so an optional `model.json` beside the model names the family (`{"family": "blazeface"}`),
and without it the model's tensor signature decides. Families are an explicit dict, not discovery.
ONNX models are opened once: the session's inputs and outputs decide the family, then the family's
factory takes that same session.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, ValidationError

from inference_module.errors import ModelLoadError
from inference_module.files import read_regular
from inference_module.runtimes.base import Detector, DetectorFactory, RuntimeOptions
from inference_module.runtimes.blazeface import is_blazeface_model, load_blazeface
from inference_module.runtimes.onnx_session import open_session
from inference_module.runtimes.onnx_ultralytics import layout_of, ultralytics_from_session
from inference_module.runtimes.onnx_yolo import tiny_yolo_from_session
from inference_module.runtimes.tflite_ssd import load_tflite_ssd

DESCRIPTOR_FILE = "model.json"
MAX_DESCRIPTOR_BYTES = 64 * 1024
Family = Literal["yolo", "yolov8", "yolov5", "ssd", "blazeface"]
OnnxFactory = Callable[[ort.InferenceSession, RuntimeOptions], Detector]

ONNX_FAMILIES: Mapping[str, OnnxFactory] = MappingProxyType(
    {
        "yolo": tiny_yolo_from_session,
        "yolov8": partial(ultralytics_from_session, expected="yolov8"),
        "yolov5": partial(ultralytics_from_session, expected="yolov5"),
    }
)
TFLITE_FAMILIES: Mapping[str, DetectorFactory] = MappingProxyType(
    {"ssd": load_tflite_ssd, "blazeface": load_blazeface}
)


class ModelDescriptor(BaseModel):
    """The optional `model.json` of a model package."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    family: Family | None = None


def read_family(model_dir: Path) -> Family | None:
    """The family named in `model.json`, None without one; a present but bad file is refused."""
    path = model_dir / DESCRIPTOR_FILE
    try:
        raw = read_regular(path, MAX_DESCRIPTOR_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelLoadError(f"{DESCRIPTOR_FILE} could not be read: {exc}") from exc
    try:
        return ModelDescriptor.model_validate(json.loads(raw)).family
    except (ValueError, ValidationError) as exc:
        raise ModelLoadError(
            f"{DESCRIPTOR_FILE} is not valid: family must be one of yolo, yolov8, yolov5, ssd, blazeface"
        ) from exc


def _dispatch(
    engine: str, families: Mapping[str, DetectorFactory], detect_family: Callable[[Path], str]
) -> DetectorFactory:
    def load(model_path: Path, options: RuntimeOptions) -> Detector:
        family = read_family(model_path.parent) or detect_family(model_path)
        factory = families.get(family)
        if factory is None:
            raise ModelLoadError(f"family {family!r} is not a {engine} family ({', '.join(families)})")
        return factory(model_path, options)

    return load


def onnx_family(session: ort.InferenceSession) -> str:
    """tiny-YOLOv3 takes two inputs (image, image_shape); an Ultralytics export one image and one output."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) == 2:
        return "yolo"
    if len(inputs) == 1 and len(outputs) == 1:
        layout = layout_of(inputs[0].shape, outputs[0].shape)
        if layout is not None:
            return layout
    signature = f"inputs {[list(i.shape) for i in inputs]}, outputs {[list(o.shape) for o in outputs]}"
    raise ModelLoadError(
        f"the ONNX model's tensors ({signature}) match no supported family: tiny-YOLOv3 (image + "
        "image_shape in; boxes, scores, indices out), Ultralytics YOLOv8/YOLO11 ([1,3,H,W] in, [1,4+C,N] "
        "out) or YOLOv5 ([1,3,H,W] in, [1,N,5+C] out); name the family in model.json if it is one of these"
    )


def load_onnx(model_path: Path, options: RuntimeOptions) -> Detector:
    """Open the session once; `model.json` or the session's signature picks the family's factory."""
    declared = read_family(model_path.parent)
    if declared is not None and declared not in ONNX_FAMILIES:
        raise ModelLoadError(f"family {declared!r} is not a ONNX family ({', '.join(ONNX_FAMILIES)})")
    session = open_session(model_path, options)
    return ONNX_FAMILIES[declared or onnx_family(session)](session, options)


load_tflite = _dispatch(
    "TFLite", TFLITE_FAMILIES, lambda path: "blazeface" if is_blazeface_model(path) else "ssd"
)
