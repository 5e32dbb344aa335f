"""Model runtimes behind one interface (`base.Detector`), registered in an explicit dict."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from edge_shared.reported import Runtime
from inference_module.runtimes.base import (
    Detector,
    DetectorFactory,
    DetectorMetadata,
    RawDetections,
    RuntimeOptions,
)
from inference_module.runtimes.families import load_onnx, load_tflite

__all__ = [
    "Detector",
    "DetectorFactory",
    "DetectorMetadata",
    "RawDetections",
    "RuntimeOptions",
    "default_registry",
]


def default_registry() -> Mapping[Runtime, DetectorFactory]:
    """Runtime name (chosen from the model file's extension) → loader, which picks the family."""
    return MappingProxyType({"onnx": load_onnx, "tflite": load_tflite})
