"""JSON merge patch (RFC 7386), as IoT Hub applies twin patches: the one implementation everyone uses."""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping
from typing import Any


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: `None` deletes a key, objects merge recursively, anything else replaces."""
    result = dict(copy.deepcopy(target))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            current = result.get(key)
            result[key] = merge_patch(current if isinstance(current, Mapping) else {}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def apply_patch(target: MutableMapping[str, Any], patch: Mapping[str, Any]) -> None:
    """`merge_patch` in place, for holders of a long-lived dict."""
    merged = merge_patch(target, patch)
    target.clear()
    target.update(merged)
