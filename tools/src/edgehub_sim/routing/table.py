"""The route table: which sinks a message goes to, with what priority and time-to-live."""

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from edgehub_sim.routing.errors import RouteError
from edgehub_sim.routing.evaluate import EvalContext, matches
from edgehub_sim.routing.grammar import parse_route
from edgehub_sim.routing.message import Delivery, RoutableMessage, Sink
from edgehub_sim.routing.where import Expr

_log = logging.getLogger(__name__)

#: edgeHub's priority for routes that give none: below every explicit priority (0-9).
DEFAULT_PRIORITY = 2_000_000_000


class _RouteSpec(BaseModel):
    """The schema 1.1 object form of a route entry."""

    model_config = ConfigDict(extra="forbid")

    route: StrictStr
    priority: StrictInt = Field(default=DEFAULT_PRIORITY, ge=0, le=9)
    # 0 is edgeHub's "not given": the store-and-forward TTL applies.
    time_to_live_secs: StrictInt = Field(default=0, ge=0, alias="timeToLiveSecs")


def normalize(path: str) -> str:
    """``norm(s)`` of edgeHub's matcher: trailing slashes collapsed to exactly one."""
    return path.strip().rstrip("/") + "/"


def source_prefix(source: str) -> str:
    """The prefix a route source matches: trimmed, trailing ``*`` then trailing ``/`` removed."""
    prefix = source.strip().removesuffix("*")
    if len(prefix) > 1:
        prefix = prefix.removesuffix("/")
    return normalize(prefix).lower()


@dataclass(frozen=True)
class Route:
    """One parsed route from the manifest."""

    name: str
    text: str
    source: str
    condition: Expr | None
    sink: Sink
    priority: int
    ttl_secs: int

    def matches_source(self, message: RoutableMessage) -> bool:
        """Case-insensitive prefix match of the message's source path."""
        return normalize(message.source).lower().startswith(source_prefix(self.source))


def _parse_entry(name: str, entry: object, default_ttl_secs: int) -> Route:
    if isinstance(entry, str):
        spec = _RouteSpec(route=entry)
    elif isinstance(entry, Mapping):
        try:
            spec = _RouteSpec.model_validate(dict(entry))
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in exc.errors()
            )
            raise RouteError(f"route {name!r}: invalid route object ({details})") from exc
    else:
        raise RouteError(
            f"route {name!r}: expected a route string or an object with 'route', got {type(entry).__name__}"
        )
    try:
        statement = parse_route(spec.route)
    except RouteError as exc:
        raise RouteError(f"route {name!r} ({spec.route!r}): {exc}") from exc
    return Route(
        name=name,
        text=spec.route,
        source=statement.source,
        condition=statement.condition,
        sink=statement.sink,
        priority=spec.priority,
        ttl_secs=spec.time_to_live_secs or default_ttl_secs,
    )


class RouteTable:
    """Routes in manifest order; ``deliveries`` decides where one message goes."""

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self._routes = routes

    @classmethod
    def parse(cls, routes: Mapping[str, str | Mapping[str, Any]], *, default_ttl_secs: int) -> "RouteTable":
        """Parse manifest route entries (string or ``{"route", "priority", "timeToLiveSecs"}``).

        Raises ``RouteError`` naming the first route that cannot be parsed or is not supported.
        """
        if default_ttl_secs <= 0:
            raise RouteError(f"default time-to-live must be positive, got {default_ttl_secs}")
        parsed = tuple(_parse_entry(name, entry, default_ttl_secs) for name, entry in routes.items())
        return cls(parsed)

    @property
    def routes(self) -> tuple[Route, ...]:
        return self._routes

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def deliveries(self, message: RoutableMessage) -> list[Delivery]:
        """One delivery per sink that some matching route targets.

        When several matching routes share a sink, the highest priority (lowest number) wins, then the
        longest TTL, then the earliest route; deliveries are ordered by priority, then route order.
        """
        ctx = EvalContext(message)
        best: dict[Sink, tuple[int, Route]] = {}
        for index, route in enumerate(self._routes):
            if not route.matches_source(message):
                continue
            if route.condition is not None and not matches(route.condition, ctx):
                continue
            current = best.get(route.sink)
            if current is None or (route.priority, -route.ttl_secs) < (
                current[1].priority,
                -current[1].ttl_secs,
            ):
                best[route.sink] = (index, route)
        chosen = sorted(best.values(), key=lambda pair: (pair[1].priority, pair[0]))
        deliveries = [Delivery(r.sink, r.priority, r.ttl_secs, r.name) for _, r in chosen]
        _log.debug(
            "routed message from %s to %d sink(s)",
            message.source,
            len(deliveries),
            extra={"routes": [d.route_name for d in deliveries]},
        )
        return deliveries
