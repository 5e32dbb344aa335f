"""The layered-deployment merge, as pure functions: which properties each layer sets, in which order,
and the twin patch that turns one desired section into another.

For one module twin, every targeting layered deployment contributes its `properties.desired.<path>`
values. They are applied over the twin's base desired section (the manifest plus direct service PATCHes)
from the lowest precedence to the highest, each replacing the value at its path, so for the same path the
higher priority wins and, on equal priority, the configuration created later (then the greater id, to be
deterministic). A `null` value removes the path. Recomputing from the base each cycle is what makes a
removed or retargeted layer take away what only it set and bring back what a lower layer (or the base) sets.
"""

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgehub_sim.store import LayerValue

DESIRED_PREFIX = "properties.desired."


@dataclass(frozen=True)
class Layer:
    """One layered deployment as the merge needs it."""

    config_id: str
    priority: int
    created: str  # createdTimeUtc, ISO 8601 in UTC: compares in time order as text
    modules_content: Mapping[str, Mapping[str, Any]]

    def precedence(self) -> tuple[int, str, str]:
        """Sort key: later in the sort wins."""
        return (self.priority, self.created, self.config_id)


def split_path(key: str) -> tuple[str, ...]:
    """`"properties.desired.a.b"` -> `("a", "b")`; ValueError for any other key."""
    if not key.startswith(DESIRED_PREFIX) or len(key) == len(DESIRED_PREFIX):
        raise ValueError(f"{key!r} is not of the form 'properties.desired.<path>'")
    steps = tuple(key[len(DESIRED_PREFIX) :].split("."))
    if any(not step for step in steps):
        raise ValueError(f"{key!r} has an empty path segment")
    return steps


def module_layers(layers: Iterable[Layer], module: str) -> tuple[LayerValue, ...]:
    """What the given (targeting) layers set on `module`, lowest precedence first."""
    values: list[LayerValue] = []
    for layer in sorted(layers, key=Layer.precedence):
        for key, value in layer.modules_content.get(module, {}).items():
            values.append((layer.config_id, split_path(key), value))
    return tuple(values)


def overlay(base: Mapping[str, Any], layers: Sequence[LayerValue]) -> dict[str, Any]:
    """The desired section a module sees: `base` with each layer's values set in order."""
    result = copy.deepcopy(dict(base))
    for _, path, value in layers:
        _set_path(result, path, copy.deepcopy(value))
    return result


def _set_path(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = document
    for step in path[:-1]:
        child = node.get(step)
        if not isinstance(child, dict):
            child = {}
            node[step] = child
        node = child
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns `old` into `new` (only what changed; `null` for removed keys)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            inner = diff(before, value)
            if inner:
                patch[key] = inner
        elif before is _MISSING or type(before) is not type(value) or before != value:
            patch[key] = copy.deepcopy(value)  # type check: JSON's true is not its 1
    return patch


_MISSING: Any = object()
