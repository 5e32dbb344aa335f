"""Message-property codec for the last segment of IoT Hub MQTT message topics.

The SDK writes properties as ``key=value`` pairs joined by ``&``, each key and value percent-encoded with
``quote(safe="")`` (so ``/ & = %`` and spaces never appear raw and ``+`` is never used). System keys start
with ``$.``; everything else is a custom (application) property. Decoding splits on ``&``, then on the
*first* ``=``, then ``unquote()``s: never ``parse_qs`` or ``unquote_plus``, which would turn ``+`` into
a space.
"""

from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote

SYSTEM_PREFIX = "$."

#: The order in which azure-iot-device 2.14 writes system properties on telemetry topics.
SDK_SYSTEM_ORDER: tuple[str, ...] = ("$.on", "$.mid", "$.cid", "$.uid", "$.ct", "$.ce", "$.ifid", "$.exp")

#: Order on input topics (simulator -> module): the SDK's keys, then edgeHub's connection ids.
_INPUT_SYSTEM_ORDER: tuple[str, ...] = (*SDK_SYSTEM_ORDER, "$.cdid", "$.cmid")


def _q(text: str) -> str:
    return quote(text, safe="")


def _join(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{_q(key)}={_q(value)}" for key, value in pairs)


def _ordered_system(system: Mapping[str, str], order: tuple[str, ...]) -> list[tuple[str, str]]:
    """Known keys in `order`, then any other system key in the caller's order."""
    for key in system:
        if not key.startswith(SYSTEM_PREFIX):
            raise ValueError(f"system property key {key!r} must start with {SYSTEM_PREFIX!r}")
    known = [(key, system[key]) for key in order if key in system]
    extra = [(key, value) for key, value in system.items() if key not in order]
    return known + extra


def _sorted_custom(custom: Mapping[str, str]) -> list[tuple[str, str]]:
    for key in custom:
        if key.startswith(SYSTEM_PREFIX):
            raise ValueError(
                f"custom property key {key!r} starts with {SYSTEM_PREFIX!r} and would decode as a "
                "system property"
            )
    return sorted(custom.items())


def encode_properties(system: Mapping[str, str], custom: Mapping[str, str]) -> str:
    """Encode properties exactly as the SDK does on ``.../messages/events/{props}``.

    System keys come first in the SDK's order, then custom properties sorted by key. Like the SDK, a
    ``&`` joins the two groups only when both are non-empty. Empty values are encoded as given (the SDK
    omits unset system properties; pass only the ones that are set). Raises ``ValueError`` if a system
    key lacks the ``$.`` prefix or a custom key has it, since either would not decode back as given.
    """
    parts = [
        _join(_ordered_system(system, SDK_SYSTEM_ORDER)),
        _join(_sorted_custom(custom)),
    ]
    return "&".join(part for part in parts if part)


def encode_input_properties(system: Mapping[str, str], custom: Mapping[str, str]) -> str:
    """Encode properties for an input topic ``devices/{d}/modules/{m}/inputs/{input}/{props}``.

    Every key and value goes through ``quote(safe="")``: the SDK takes the properties from
    ``topic.split("/")[6]`` and splits each pair on every ``=``, so a raw ``/`` or ``=`` would corrupt
    them. System keys come in the SDK's order followed by ``$.cdid``/``$.cmid``; custom keys sorted.
    """
    pairs = _ordered_system(system, _INPUT_SYSTEM_ORDER) + _sorted_custom(custom)
    return _join(pairs)


def decode_properties(segment: str) -> tuple[dict[str, str], dict[str, str]]:
    """Decode a property segment into ``(system, custom)``; system keys keep their ``$.`` prefix.

    Empty pairs (``a=1&&b=2``, an empty segment) are skipped. A pair without ``=`` decodes to the value
    ``""`` (the SDK would give ``None`` on input topics; the simulator has no use for the difference).
    A repeated key keeps its last value.
    """
    system: dict[str, str] = {}
    custom: dict[str, str] = {}
    for pair in segment.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key = unquote(raw_key)
        target = system if key.startswith(SYSTEM_PREFIX) else custom
        target[key] = unquote(raw_value)
    return system, custom
