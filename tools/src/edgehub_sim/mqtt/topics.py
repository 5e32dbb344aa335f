"""MQTT topic-filter matching and the IoT Hub topic shapes the broker understands."""

from dataclasses import dataclass
from urllib.parse import unquote

TWIN_RESPONSE_FILTER = "$iothub/twin/res/#"
DESIRED_PATCH_FILTER = "$iothub/twin/PATCH/properties/desired/#"
METHODS_FILTER = "$iothub/methods/POST/#"


def valid_filter(topic_filter: str) -> bool:
    """MQTT 3.1.1 §4.7.1: `#` only last and alone in its level, `+` alone in its level."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def matches(topic_filter: str, topic: str) -> bool:
    """Does `topic` match `topic_filter` (with `+` and `#` wildcards)?"""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def parse_query(query: str) -> dict[str, str]:
    """`$rid=1&$version=2` → {"$rid": "1", "$version": "2"} (split on the first `=`, unquoted)."""
    fields: dict[str, str] = {}
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            fields[unquote(name)] = unquote(value)
    return fields


@dataclass(frozen=True)
class Telemetry:
    """`devices/{d}/modules/{m}/messages/events/{props}`."""

    device_id: str
    module_id: str
    properties: str


def parse_telemetry(topic: str) -> Telemetry | None:
    """Split a module telemetry/output topic, or None if it is not one."""
    parts = topic.split("/", 6)
    if (
        len(parts) >= 6
        and parts[0] == "devices"
        and parts[2] == "modules"
        and parts[4] == "messages"
        and parts[5] == "events"
    ):
        return Telemetry(parts[1], parts[3], parts[6] if len(parts) == 7 else "")
    return None
