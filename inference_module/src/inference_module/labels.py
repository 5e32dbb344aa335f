"""Label files: one name per line, read once at load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inference_module.errors import ModelLoadError
from inference_module.files import read_regular

UNKNOWN_LABEL = "???"
MAX_LABEL_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Labels:
    """Names by class id. `offset` is 1 when the file starts with `???` (the SSD zoo's background line):
    model class c is then line c + 1, and the reported `class_id` is that line."""

    names: tuple[str, ...]
    offset: int

    def __len__(self) -> int:
        return len(self.names)

    def name(self, class_id: int) -> str:
        """The name on line `class_id`; `class_<id>` past the end, never an error."""
        if 0 <= class_id < len(self.names):
            return self.names[class_id]
        return f"class_{class_id}"


def parse_labels(text: str) -> Labels:
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    offset = 1 if names and names[0] == UNKNOWN_LABEL else 0
    return Labels(names=tuple(names), offset=offset)


def load_labels(path: Path) -> Labels:
    try:
        text = read_regular(path, MAX_LABEL_FILE_BYTES).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"label file cannot be read: {exc.__class__.__name__}") from exc
    return parse_labels(text)
