"""Target conditions and twin-query filters: IoT Hub's query language over twin documents.

Parsed by the routing package's grammar in its ``twin`` dialect (one parser for both languages) and
checked here for what a twin has: a condition naming anything else (a typo such as ``tag.ring``) is
refused rather than silently matching nothing. IoT Hub refuses ``IN [...]`` in target conditions.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from edgehub_sim.errors import HubRequestError
from edgehub_sim.routing import RouteError
from edgehub_sim.routing.evaluate import TwinContext, matches
from edgehub_sim.routing.where import And, Compare, Expr, IsDefined, Not, Or, TwinPath, parse_twin_condition

#: Twin roots a device-twin condition may name.
DEVICE_ROOTS = frozenset({"deviceId", "tags", "properties", "status", "connectionState", "capabilities"})
#: Twin roots a module-twin condition (`FROM devices.modules`) may name.
MODULE_ROOTS = DEVICE_ROOTS | {"moduleId"}
_SECTIONS = frozenset({"desired", "reported"})


@dataclass(frozen=True)
class Condition:
    """A parsed condition; `None` expression means "nothing" (IoT Hub's empty target condition)."""

    text: str
    expr: Expr | None

    def matches(self, twin: Mapping[str, Any]) -> bool:
        """True only when the condition is exactly true for this twin document."""
        return self.expr is not None and matches(self.expr, TwinContext(twin))


def parse_condition(text: str, roots: frozenset[str], error_code: str) -> Condition:
    """Parse `text`; HubRequestError(400, `error_code`) saying what is wrong. Empty text targets nothing."""
    if not text.strip():
        return Condition(text, None)
    try:
        expr = parse_twin_condition(text)
    except RouteError as exc:
        raise HubRequestError(400, error_code, f"invalid condition {text!r}: {exc}") from exc
    for path in _paths(expr):
        _check_path(path.steps, roots, text, error_code)
    return Condition(text, expr)


def parse_target_condition(text: str) -> Condition:
    """A configuration's `targetCondition` over device twins."""
    return parse_condition(text, DEVICE_ROOTS, "InvalidConfigurationTargetCondition")


def _check_path(steps: tuple[str, ...], roots: frozenset[str], text: str, error_code: str) -> None:
    root = steps[0]
    if root not in roots:
        raise HubRequestError(
            400,
            error_code,
            f"invalid condition {text!r}: {root!r} is not a twin property "
            f"(allowed: {', '.join(sorted(roots))})",
        )
    if root == "properties" and (len(steps) < 2 or steps[1] not in _SECTIONS):
        raise HubRequestError(
            400,
            error_code,
            f"invalid condition {text!r}: use properties.desired.<path> or properties.reported.<path>",
        )


def _paths(expr: Expr) -> Iterator[TwinPath]:
    match expr:
        case TwinPath():
            yield expr
        case IsDefined(operand=operand) | Not(operand=operand):
            yield from _paths(operand)
        case Compare(left=left, right=right) | And(left=left, right=right) | Or(left=left, right=right):
            yield from _paths(left)
            yield from _paths(right)
        case _:
            return
