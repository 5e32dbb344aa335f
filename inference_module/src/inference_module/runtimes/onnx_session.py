"""What the ONNX runtimes share: one session per model (ONNX Runtime sessions are thread-safe), opened
with the configured threads, and the class names an export may carry in its metadata."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from inference_module.errors import ModelLoadError
from inference_module.runtimes.base import EmbeddedLabels, RuntimeOptions

__all__ = ["NAMES_KEY", "embedded_names", "open_session"]

NAMES_KEY = "names"
"""`metadata_props` key under which Ultralytics exports store `{0: 'person', ...}`."""


def open_session(model_path: Path, options: RuntimeOptions) -> ort.InferenceSession:
    """A CPU session with the configured thread counts; any engine error becomes `ModelLoadError`."""
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = options.ort_intra_op_threads
    session_options.inter_op_num_threads = options.ort_inter_op_threads
    session_options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(model_path), sess_options=session_options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own unexported exception types
        raise ModelLoadError(f"ONNX Runtime could not load the model: {exc}") from exc


def custom_metadata(session: ort.InferenceSession) -> dict[str, str]:
    """The model's `metadata_props` (empty when it has none)."""
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception:  # a model without metadata: nothing to read, not an error
        return {}


def embedded_names(session: ort.InferenceSession) -> EmbeddedLabels | None:
    """The `names` entry of the model's metadata, unparsed; None when the model has none."""
    names = custom_metadata(session).get(NAMES_KEY)
    if names is None:
        return None
    return EmbeddedLabels(source='ONNX metadata "names"', kind="names-literal", data=names.encode("utf-8"))
