"""Route statements: ``[SELECT *] FROM <path> [WHERE <condition>] INTO <sink>`` (edgeHub's Route.g4).

Only the sources and sinks edgeHub documents for modules are accepted; anything else raises
``RouteError`` so that a typo in the manifest fails the load instead of silently dropping messages.
"""

import re
from dataclasses import dataclass

from edgehub_sim.routing.errors import RouteError
from edgehub_sim.routing.message import UPSTREAM, Sink
from edgehub_sim.routing.where import Expr, parse_where_until_into

_HEAD = re.compile(r"\s*(?:SELECT\s*\*\s*)?FROM\s+(?P<path>\S+)", re.IGNORECASE)
_CLAUSE = re.compile(r"\s+(?P<keyword>WHERE|INTO)(?=\s|$)", re.IGNORECASE)
_ITEM = re.compile(r"[A-Za-z0-9_.:@+-]+")
_BROKERED = re.compile(
    r"BrokeredEndpoint\s*\(\s*(?P<quote>[\"'])(?P<endpoint>[^\"']*)(?P=quote)\s*\)", re.IGNORECASE
)
_MODULE_INPUT = re.compile(r"/modules/(?P<module>[^/\s]+)/inputs/(?P<input>[^/\s]+)")

_SUPPORTED_SOURCES = (
    "/*, /twinChangeNotifications, /messages/*, /messages/modules/*, /messages/modules/<id>, "
    "/messages/modules/<id>/*, /messages/modules/<id>/outputs/*, /messages/modules/<id>/outputs/<output>"
)


@dataclass(frozen=True)
class RouteStatement:
    """A parsed route: its source path as written, optional condition, and sink."""

    source: str
    condition: Expr | None
    sink: Sink


def _is_name(item: str) -> bool:
    return item != "*" and _ITEM.fullmatch(item) is not None


def validate_source(path: str) -> None:
    """Refuse a source path that is not one of the forms edgeHub supports for modules."""
    if not path.startswith("/"):
        raise RouteError(f"source {path!r} must start with '/'")
    items = path[1:].split("/")
    if any(item != "*" and not _is_name(item) for item in items):
        raise RouteError(f"source {path!r} has an empty or invalid path segment")
    if not _is_supported_source(items, [item.lower() for item in items]):
        raise RouteError(f"source {path!r} is not supported (supported: {_SUPPORTED_SOURCES})")


def _is_supported_source(items: list[str], lowered: list[str]) -> bool:
    if lowered in (["*"], ["twinchangenotifications"], ["messages", "*"], ["messages", "modules", "*"]):
        return True
    if lowered[:2] != ["messages", "modules"] or len(items) < 3 or not _is_name(items[2]):
        return False
    if len(items) == 3:
        return True  # /messages/modules/<id>
    if len(items) == 4:
        return items[3] == "*"  # /messages/modules/<id>/*
    return len(items) == 5 and lowered[3] == "outputs"  # .../outputs/* or .../outputs/<output>


def parse_sink(text: str) -> Sink:
    """``$upstream`` or ``BrokeredEndpoint("/modules/<id>/inputs/<input>")``, quotes single or double."""
    text = text.strip()
    if text.lower() == "$upstream":
        return UPSTREAM
    brokered = _BROKERED.fullmatch(text)
    if brokered is None:
        raise RouteError(
            f"sink {text!r} is not supported (supported: $upstream, "
            'BrokeredEndpoint("/modules/<id>/inputs/<input>"))'
        )
    endpoint = _MODULE_INPUT.fullmatch(brokered.group("endpoint"))
    if endpoint is None:
        raise RouteError(
            f"BrokeredEndpoint {brokered.group('endpoint')!r} is not of the form /modules/<id>/inputs/<input>"
        )
    if "*" in endpoint.group(0):
        raise RouteError(f"sink {text!r} contains a wildcard; sinks name one module input")
    return Sink("module", endpoint.group("module"), endpoint.group("input"))


def parse_route(text: str) -> RouteStatement:
    """Parse one route statement; raises ``RouteError`` saying what is wrong (not which route)."""
    head = _HEAD.match(text)
    if head is None:
        raise RouteError("expected '[SELECT *] FROM <path> [WHERE <condition>] INTO <sink>'")
    source = head.group("path")
    validate_source(source)
    clause = _CLAUSE.match(text, head.end())
    if clause is None:
        raise RouteError(f"expected WHERE or INTO after the source, found {text[head.end() :].strip()!r}")
    condition: Expr | None = None
    into_end = clause.end()
    if clause.group("keyword").upper() == "WHERE":
        condition, into_start = parse_where_until_into(text, clause.end())
        into_end = into_start + len("INTO")
    return RouteStatement(source, condition, parse_sink(text[into_end:]))
