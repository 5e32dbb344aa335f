"""Structured JSON logs with context and secret redaction, configured once per process.

Context (update id, model version) is bound with `log_context(...)`, carried by a ContextVar so that
concurrent tasks keep their own. Every record passes through `redact` in the formatter: the one place
where text leaves the process, so a SAS token logged by any library is still removed.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from edge_shared.redaction import redact

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "edge_log_context", default=MappingProxyType({})
)
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields to every record logged inside the block (and in tasks started from it)."""
    token = _context.set(MappingProxyType({**_context.get(), **fields}))
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, context and `extra=` fields, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_context.get())
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """Human-readable lines for local runs, redacted like the JSON ones."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ctx = _context.get()
        if ctx:
            text += " " + " ".join(f"{k}={v}" for k, v in ctx.items())
        return redact(text)


def configure_logging(
    level: str = "INFO", fmt: str = "json", *, stream: TextIO | None = None
) -> logging.Handler:
    """Install one handler on the root logger (replacing earlier ones from this function)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name("edge_shared")
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "edge_shared":
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # The SDK and paho are chatty at INFO and may log connection details.
    for noisy in ("azure.iot.device", "paho", "urllib3", "azure.core"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return handler
