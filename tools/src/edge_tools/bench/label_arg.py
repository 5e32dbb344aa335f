"""A label file's path as a child process's argument, and back: empty means none (the model carries
its class names). No heavy imports here, so the model-memory child can time its own imports."""

from pathlib import Path

__all__ = ["label_arg", "label_path"]


def label_arg(labels: Path | None) -> str:
    return "" if labels is None else str(labels)


def label_path(arg: str) -> Path | None:
    return Path(arg) if arg else None
