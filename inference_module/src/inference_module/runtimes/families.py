"""Which detector family a model file belongs to, and the factory that loads it.

The file extension picks the engine (`onnx`, `tflite`); within one engine several model interfaces
exist, so an optional `model.json` beside the model names the family (`{"family": "blazeface"}`),
and without it the model's tensor signature decides. Families are an explicit dict, not discovery.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from inference_module.errors import ModelLoadError
from inference_module.files import read_regular
from inference_module.runtimes.base import Detector, DetectorFactory, RuntimeOptions
from inference_module.runtimes.blazeface import is_blazeface_model, load_blazeface
from inference_module.runtimes.onnx_yolo import load_onnx_yolo
from inference_module.runtimes.tflite_ssd import load_tflite_ssd

DESCRIPTOR_FILE = "model.json"
MAX_DESCRIPTOR_BYTES = 64 * 1024
Family = Literal["yolo", "ssd", "blazeface"]

ONNX_FAMILIES: Mapping[str, DetectorFactory] = MappingProxyType({"yolo": load_onnx_yolo})
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
            f"{DESCRIPTOR_FILE} is not valid: family must be one of yolo, ssd, blazeface"
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


load_onnx = _dispatch("ONNX", ONNX_FAMILIES, lambda _path: "yolo")
load_tflite = _dispatch(
    "TFLite", TFLITE_FAMILIES, lambda path: "blazeface" if is_blazeface_model(path) else "ssd"
)
