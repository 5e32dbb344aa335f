"""Class names for a model: from the package's label file, else from the model itself; read once at load.

The label file is parsed by `edge_shared.labels` (the loader checked it with the same parser). A model
may carry its names: Ultralytics ONNX exports in `metadata_props["names"]`, TFLite models with
metadata as an associated label file. A label file in the package wins over embedded names. Either
way the names must cover every class the model can output, or the load is refused: a short file would
otherwise name some classes by a neighbour's line or not at all.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edge_shared.errors import LabelError
from edge_shared.labels import MAX_LABEL_FILE_BYTES, LabelMap, parse_label_bytes, parse_label_text
from inference_module.errors import ModelLoadError
from inference_module.files import read_regular
from inference_module.runtimes.base import DetectorMetadata, EmbeddedLabels

__all__ = ["ChosenLabels", "Labels", "load_labels", "model_labels", "parse_embedded", "parse_labels"]

Labels = LabelMap
_MAX_EMBEDDED_CHARS = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ChosenLabels:
    """The names a model serves with, and where they came from (shown by `GET /model`)."""

    names: Labels
    source: str


def parse_labels(text: str) -> Labels:
    """A label file's text; `ModelLoadError` when it names no class or mixes formats."""
    try:
        return parse_label_text(text)
    except LabelError as exc:
        raise ModelLoadError(str(exc)) from exc


def load_labels(path: Path) -> Labels:
    """A regular file only (a FIFO or device would hang the load), at most 1 MiB, then parsed."""
    try:
        raw = read_regular(path, MAX_LABEL_FILE_BYTES)
    except OSError as exc:
        raise ModelLoadError(f"label file cannot be read: {exc.__class__.__name__}") from exc
    try:
        return parse_label_bytes(raw, source=path.name)
    except LabelError as exc:
        raise ModelLoadError(str(exc)) from exc


def model_labels(
    file_labels: Labels | None, labels_path: Path | None, metadata: DetectorMetadata
) -> ChosenLabels:
    """The package's label file when there is one, else the model's own names; checked against its classes."""
    if file_labels is not None and labels_path is not None:
        chosen = ChosenLabels(file_labels, f"label file {labels_path.name}")
    elif metadata.embedded_labels is not None:
        chosen = ChosenLabels(parse_embedded(metadata.embedded_labels), metadata.embedded_labels.source)
    else:
        raise ModelLoadError(
            "the package has no label file (*.txt, *.names, *.labels, *.pbtxt) "
            "and the model carries no class names"
        )
    classes = metadata.num_classes
    missing = chosen.names.missing_for(classes) if classes else 0
    if classes and missing:
        raise ModelLoadError(
            f"the {chosen.source} ends at class id {len(chosen.names) - 1} but the model outputs "
            f"{classes} classes (ids up to {classes - 1 + chosen.names.offset}): "
            f"{missing} would have no name"
        )
    return chosen


def parse_embedded(embedded: EmbeddedLabels) -> Labels:
    """Names a model file carries: a label file's text, or a names dict/list (Python or JSON literal)."""
    if embedded.problem is not None:
        raise ModelLoadError(f"the model's embedded class names cannot be read: {embedded.problem}")
    try:
        if embedded.kind == "label-file":
            return parse_label_bytes(embedded.data, source=embedded.source)
        return _names_literal(embedded.data.decode("utf-8"), embedded.source)
    except (LabelError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"the model's embedded class names cannot be read: {exc}") from exc


def _names_literal(text: str, source: str) -> Labels:
    """`{0: 'person', 1: 'bicycle'}` (what Ultralytics writes), its JSON form, or a list of names."""
    if len(text) > _MAX_EMBEDDED_CHARS:
        raise LabelError(f"{source} is longer than {_MAX_EMBEDDED_CHARS} characters")
    value: Any
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)  # literals only: never evaluates code
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            raise LabelError(f"{source} is not a dict or list of class names") from exc
    items = (
        enumerate(value) if isinstance(value, list) else value.items() if isinstance(value, dict) else None
    )
    if items is None:
        raise LabelError(f"{source} is not a dict or list of class names")
    names: dict[int, str] = {}
    for key, name in items:
        try:
            class_id = int(key)
        except (TypeError, ValueError) as exc:
            raise LabelError(f"{source} has a class id that is not a number") from exc
        if class_id < 0 or not isinstance(name, str) or not name.strip():
            raise LabelError(f"{source} has an entry that is not a non-negative id with a name")
        names[class_id] = name.strip()
    if not names:
        raise LabelError(f"{source} names no class")
    return LabelMap(MappingProxyType(names), 0, max(names) + 1)
