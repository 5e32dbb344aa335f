"""Label files packed inside a `.tflite`: TF Lite models with metadata carry their associated files
(`labelmap.txt`, ...) as a ZIP archive appended to the flatbuffer, which the interpreter ignores.

Only the archive is read, never the flatbuffer's metadata tables: the one member whose suffix makes it a
label file (`*.txt`, `*.names`, `*.labels`, `*.pbtxt`) is the label file, exactly as in a model package.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from edge_shared.errors import LabelError
from edge_shared.labels import MAX_LABEL_FILE_BYTES, find_label_file
from inference_module.runtimes.base import EmbeddedLabels

__all__ = ["embedded_label_file"]


def embedded_label_file(model_path: Path) -> EmbeddedLabels | None:
    """The label file packed in the model, unparsed; None for a model without associated files."""
    try:
        with zipfile.ZipFile(model_path) as archive:
            infos = {info.filename: info for info in archive.infolist() if not info.is_dir()}
            top = [name for name in infos if len(PurePosixPath(name).parts) == 1]
            try:
                name = find_label_file(top)
            except LabelError as exc:
                return EmbeddedLabels("TFLite metadata", "label-file", b"", problem=str(exc))
            if name is None:
                return None
            source = f"TFLite metadata {name}"
            if infos[name].file_size > MAX_LABEL_FILE_BYTES:
                return EmbeddedLabels(source, "label-file", b"", problem=f"{name} is larger than 1 MiB")
            return EmbeddedLabels(source, "label-file", archive.read(infos[name]))
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
        return None  # no appended archive (the usual case) or one that cannot be read: no embedded names
