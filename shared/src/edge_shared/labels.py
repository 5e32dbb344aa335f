"""Label files: found by role in a model package, parsed in every common text format.

Both modules use this one parser: the loader refuses a package whose label file it cannot read before
anything is installed, the inference module reads the same file the same way when it loads the model.

Formats (detected per file; BOM, CRLF, trailing spaces and a missing final newline are all fine):

- one name per line: line n (0-based) names class n. A blank line keeps its place and names nothing,
  so a gap never shifts the names after it; blank lines at the end are ignored. Darknet `.names` files
  and Ultralytics/TF `labels.txt` are this format.
- explicit ids: every non-blank line starts with an id, then whitespace, `:` or `,`, then the name
  (`16  cat`, `16 cat`, `16: cat`, `16,cat`); ids may have gaps and come in any order; blank lines are
  ignored. Coral's `coco_labels.txt` is this format.
- a TF Object Detection API label map (`*.pbtxt`): `item { id: 1 name: "..." display_name: "person" }`
  blocks; `display_name` is preferred over `name`. Ids there start at 1 (0 is the background the
  post-processing drops), so model class c is id c + 1 (`offset` 1) unless the map has an id 0.

`???` and `background` are placeholders (TF and Coral label maps use them): a placeholder names no
class. When the first line of a one-name-per-line file is a placeholder, it stands for the background
class the TF detection post-processing drops, so model class c is named by line c + 1 (`offset` 1).
A class id without a name is reported as `class_<id>`, never as a neighbour's name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from edge_shared.errors import LabelError

__all__ = [
    "LABEL_SUFFIXES",
    "MAX_LABEL_FILE_BYTES",
    "PLACEHOLDERS",
    "LabelMap",
    "find_label_file",
    "label_candidates",
    "parse_label_bytes",
    "parse_label_text",
    "read_label_file",
]

LABEL_SUFFIXES = (".txt", ".names", ".labels", ".pbtxt")
MAX_LABEL_FILE_BYTES = 1024 * 1024
PLACEHOLDERS = frozenset({"???", "background"})
_EXPLICIT = re.compile(r"^(\d{1,9})(?:\s*[:,]\s*|\s+|$)(.*)$")
_PBTXT_ITEM = re.compile(r"\bitem\s*\{([^{}]*)\}")
_PBTXT_FIELD = re.compile(
    r"\b(id|name|display_name)\s*:\s*(?:(\d{1,9})\b|\"((?:[^\"\\\\]|\\\\.)*)\"|'((?:[^'\\\\]|\\\\.)*)')"
)


@dataclass(frozen=True, slots=True)
class LabelMap:
    """Class names by id; `offset` is added to a model's class id before the lookup."""

    names: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    offset: int = 0
    size: int = 0
    """Ids covered by the file: highest id + 1 (placeholders and gaps included)."""

    def __len__(self) -> int:
        return self.size

    def name(self, class_id: int) -> str:
        """The class's name; `class_<id>` for an id the file does not name (never an error)."""
        return self.names.get(class_id) or f"class_{class_id}"

    def missing_for(self, num_classes: int) -> int:
        """How many of a model's `num_classes` ids (after the offset) lie past the end of the file."""
        return max(0, num_classes + self.offset - self.size)


def label_candidates(names: Iterable[str]) -> list[str]:
    """File names (at one folder level) that can only be label files: LABEL_SUFFIXES."""
    return sorted(name for name in names if PurePosixPath(name).suffix.lower() in LABEL_SUFFIXES)


def find_label_file(names: Iterable[str]) -> str | None:
    """The package's one label file, None without one; two or more candidates are refused, named."""
    candidates = label_candidates(names)
    if len(candidates) > 1:
        raise LabelError(
            f"a model package holds at most one label file (*.txt, *.names, *.labels, *.pbtxt), "
            f"found {len(candidates)}: {', '.join(candidates)}"
        )
    return candidates[0] if candidates else None


def parse_label_text(text: str, *, source: str = "label file") -> LabelMap:
    """Parse any format (see the module docstring); `LabelError` when it names no class or is mixed."""
    text = text.removeprefix("\ufeff")
    if source.lower().endswith(".pbtxt") or _PBTXT_ITEM.search(text):
        return _pbtxt(text, source)
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    filled = [(number, line) for number, line in enumerate(lines) if line]
    if not filled:
        raise LabelError(f"{source} holds no labels")
    matches = [(number, _EXPLICIT.match(line)) for number, line in filled]
    explicit = [number for number, match in matches if match]
    if len(explicit) == len(filled):
        return _explicit(matches, source)
    if explicit and len(explicit) * 2 >= len(filled):
        # Mostly ids: the lines without one are mistakes, not names that happen to start with a digit.
        wrong = [number + 1 for number, match in matches if not match][:5]
        raise LabelError(
            f"{source} mixes `<id> <name>` lines with lines without an id (lines {wrong}); "
            "use one format throughout"
        )
    return _positional(lines, source)


def _positional(lines: list[str], source: str) -> LabelMap:
    offset = 1 if lines[0].lower() in PLACEHOLDERS else 0
    names = {index: name for index, name in enumerate(lines) if name and name.lower() not in PLACEHOLDERS}
    if not names:
        raise LabelError(f"{source} holds only placeholders, no class names")
    return LabelMap(MappingProxyType(names), offset, len(lines))


def _explicit(matches: list[tuple[int, re.Match[str] | None]], source: str) -> LabelMap:
    names: dict[int, str] = {}
    seen: set[int] = set()
    for number, match in matches:
        assert match is not None  # only called when every line matched
        class_id, name = int(match.group(1)), match.group(2).strip()
        if class_id in seen:
            raise LabelError(f"{source} line {number + 1}: id {class_id} appears twice")
        seen.add(class_id)
        if name and name.lower() not in PLACEHOLDERS:
            names[class_id] = name
    if not names:
        raise LabelError(f"{source} holds only ids and placeholders, no class names")
    return LabelMap(MappingProxyType(names), 0, max(seen) + 1)


def _pbtxt(text: str, source: str) -> LabelMap:
    """A TF Object Detection API `StringIntLabelMap` in text format."""
    names: dict[int, str] = {}
    items = _PBTXT_ITEM.findall(text)
    for number, body in enumerate(items, start=1):
        fields: dict[str, str] = {}
        for key, integer, double, single in _PBTXT_FIELD.findall(body):
            fields[key] = integer if key == "id" else (double or single)
        if "id" not in fields:
            raise LabelError(f"{source}: item {number} has no numeric id")
        class_id = int(fields["id"])
        if class_id in names:
            raise LabelError(f"{source}: id {class_id} appears twice")
        name = (fields.get("display_name") or fields.get("name") or "").strip()
        names[class_id] = name
    named = {key: value for key, value in names.items() if value and value.lower() not in PLACEHOLDERS}
    if not named:
        raise LabelError(f"{source} holds no labels (no `item {{ id: … name: … }}` with a name)")
    offset = 0 if 0 in names else 1
    return LabelMap(MappingProxyType(named), offset, max(names) + 1)


def read_label_file(path: Path, *, max_bytes: int = MAX_LABEL_FILE_BYTES) -> LabelMap:
    """Read and parse a label file (UTF-8, optional BOM); `LabelError` for anything unusable."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise LabelError(f"{path.name} cannot be read: {exc.__class__.__name__}") from exc
    return parse_label_bytes(raw, source=path.name, max_bytes=max_bytes)


def parse_label_bytes(raw: bytes, *, source: str, max_bytes: int = MAX_LABEL_FILE_BYTES) -> LabelMap:
    """`parse_label_text` for undecoded bytes, with the size limit and UTF-8 check."""
    if len(raw) > max_bytes:
        raise LabelError(f"{source} is larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LabelError(f"{source} is not UTF-8 text") from exc
    return parse_label_text(text, source=source)
