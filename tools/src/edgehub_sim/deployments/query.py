"""The subset of IoT Hub's twin query language the simulator runs: `SELECT * | <paths> FROM devices |
devices.modules [WHERE <condition>]` (`POST /devices/query` and configurations' custom metrics).

Anything outside the subset (aggregates, GROUP BY, joins, other collections) is refused with a 400, never
answered with a silently different result.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from edgehub_sim.deployments.conditions import DEVICE_ROOTS, MODULE_ROOTS, Condition, parse_condition
from edgehub_sim.errors import HubRequestError
from edgehub_sim.routing.evaluate import UNDEFINED, value_at

_QUERY = re.compile(
    r"\s*SELECT\s+(?P<projection>.+?)\s+FROM\s+(?P<source>\S+)(?:\s+WHERE\s+(?P<where>.*?))?\s*",
    re.IGNORECASE | re.DOTALL,
)
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")

Collection = Literal["devices", "devices.modules"]


@dataclass(frozen=True)
class TwinQuery:
    """A parsed query: which twins, which filter, which fields (None: whole documents)."""

    collection: Collection
    condition: Condition | None
    fields: tuple[tuple[str, ...], ...] | None

    def run(self, twins: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The matching twins (of this query's collection), projected."""
        return [
            self._project(twin) for twin in twins if self.condition is None or self.condition.matches(twin)
        ]

    def _project(self, twin: Mapping[str, Any]) -> dict[str, Any]:
        if self.fields is None:
            return dict(twin)
        row: dict[str, Any] = {}
        for path in self.fields:
            value = value_at(twin, path)
            if value is not UNDEFINED:
                row[path[-1]] = value
        return row


def parse_query(text: str, error_code: str = "BadRequest") -> TwinQuery:
    """Parse a query; HubRequestError(400, `error_code`) naming what is not supported."""
    match = _QUERY.fullmatch(text)
    if match is None:
        raise HubRequestError(
            400, error_code, f"invalid query {text!r}: expected SELECT ... FROM devices[.modules] [WHERE ...]"
        )
    source = match.group("source").lower()
    if source not in ("devices", "devices.modules"):
        raise HubRequestError(
            400, error_code, f"invalid query {text!r}: FROM devices or devices.modules only"
        )
    collection: Collection = "devices" if source == "devices" else "devices.modules"
    roots = DEVICE_ROOTS if collection == "devices" else MODULE_ROOTS
    where = match.group("where")
    condition = None if where is None else parse_condition(where, roots, error_code)
    if condition is not None and condition.expr is None:
        raise HubRequestError(400, error_code, f"invalid query {text!r}: empty WHERE condition")
    projection = match.group("projection").strip()
    if projection == "*":
        return TwinQuery(collection, condition, None)
    fields: list[tuple[str, ...]] = []
    for item in projection.split(","):
        name = item.strip()
        if _PATH.fullmatch(name) is None or name.split(".")[0] not in roots:
            raise HubRequestError(
                400, error_code, f"invalid query {text!r}: cannot select {name!r} (twin paths or * only)"
            )
        fields.append(tuple(name.split(".")))
    return TwinQuery(collection, condition, tuple(fields))
