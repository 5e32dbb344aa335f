"""Image sizes and their largest layers, as the Markdown table docs/operations.md records."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from edge_tools.images.engine import Engine

MB = 1_000_000


@dataclass(frozen=True)
class Layer:
    size: int
    created_by: str

    @property
    def step(self) -> str:
        """The Dockerfile step, without the shell prefix engines add."""
        text = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", self.created_by).strip()
        text = re.sub(r"\s+", " ", text)
        text = re.sub(r"^(COPY|ADD) (?:dir|file):[0-9a-f]+ in (\S+)", r"\1 … \2", text)  # content hash
        return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class ImageSize:
    tag: str
    size: int
    layers: tuple[Layer, ...]

    def largest(self, count: int = 3) -> list[Layer]:
        return sorted(self.layers, key=lambda layer: layer.size, reverse=True)[:count]


def measure(engine: Engine, tag: str) -> ImageSize:
    inspect = json.loads(engine.run(["image", "inspect", tag], timeout=60).stdout)
    history = engine.run(
        ["history", "--no-trunc", "--human=false", "--format", "{{json .}}", tag], timeout=60
    ).stdout
    return ImageSize(tag, int(inspect[0]["Size"]), tuple(parse_history(history)))


def parse_history(text: str) -> list[Layer]:
    """`history --format '{{json .}}'`: podman prints one JSON array, Docker one object per line."""
    text = text.strip()
    rows = (
        json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
    )
    layers: list[Layer] = []
    for row in rows:
        size = str(row.get("size", row.get("Size", 0)))
        created = str(row.get("createdBy", row.get("CreatedBy", "")))
        layers.append(Layer(int(size) if size.isdigit() else _bytes(size), created))
    return layers


def _bytes(text: str) -> int:
    match = re.fullmatch(r"([\d.]+)\s*([kKMG]?B)", text.strip())
    if match is None:
        return 0
    factor = {"B": 1, "kB": 1000, "KB": 1000, "MB": MB, "GB": 1000 * MB}[match.group(2)]
    return int(float(match.group(1)) * factor)


def markdown(images: Sequence[ImageSize]) -> str:
    rows = ["| image | size | largest layers |", "|---|---|---|"]
    for image in images:
        layers = "; ".join(f"{layer.size / MB:.0f} MB `{layer.step}`" for layer in image.largest())
        rows.append(f"| `{image.tag}` | {image.size / MB:.0f} MB | {layers} |")
    return "\n".join(rows) + "\n"
