"""Render the services' settings classes as Markdown tables, so the README cannot drift from the code.

`python -m edge_tools.settings_doc` prints the tables; `--write README.md` replaces the block between
the `<!-- settings:begin -->` / `<!-- settings:end -->` markers. A test asserts the README is current.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

SERVICES: dict[str, str] = {
    "loader": "loader_module.settings:LoaderSettings",
    "inference": "inference_module.settings:InferenceSettings",
}
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def load_class(spec: str) -> type[BaseSettings]:
    module_name, _, class_name = spec.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, BaseSettings)):
        raise TypeError(f"{spec} is not a pydantic-settings class")
    return cls


def _default(field: FieldInfo) -> str:
    if field.default is not PydanticUndefined:
        value: Any = field.default
    elif field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        return "**required**"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value is None or value in ([], ""):
        return "—"
    return f"`{value}`"


def settings_table(cls: type[BaseSettings]) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in cls.model_fields.items():
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{prefix}{name.upper()}` | {_default(field)} | {description} |")
    return "\n".join(rows)


def render() -> str:
    parts = [BEGIN]
    for service, spec in SERVICES.items():
        parts += ["", f"#### {service} (`{spec.split(':')[1]}`)", "", settings_table(load_class(spec))]
    parts += ["", END]
    return "\n".join(parts)


def replace_block(text: str, block: str) -> str:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"markers {BEGIN} / {END} not found")
    return text[:start] + block + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", type=Path, help="file whose marked block to replace")
    args = parser.parse_args(argv)
    block = render()
    if args.write:
        args.write.write_text(replace_block(args.write.read_text(encoding="utf-8"), block), encoding="utf-8")
    else:
        sys.stdout.write(block + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
