"""Connection strings (`Key=Value;...`) for IoT Hub and Azure Storage, parsed once and never logged."""

from __future__ import annotations

from dataclasses import dataclass, field


class ConnectionStringError(ValueError):
    """A connection string lacks a required key; the message names the key, never the value."""


def parse_connection_string(text: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in text.strip().strip(";").split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ConnectionStringError(f"malformed connection string part (no '=') near key {key[:20]!r}")
        parts[key.strip()] = value.strip()
    return parts


@dataclass(frozen=True)
class HubConnection:
    """An IoT Hub service connection string (`HostName`, `SharedAccessKeyName`, `SharedAccessKey`)."""

    host: str
    key_name: str
    key: str = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> HubConnection:
        parts = parse_connection_string(text)
        missing = [k for k in ("HostName", "SharedAccessKeyName", "SharedAccessKey") if not parts.get(k)]
        if missing:
            raise ConnectionStringError(f"IoT Hub connection string lacks {', '.join(missing)}")
        return cls(parts["HostName"], parts["SharedAccessKeyName"], parts["SharedAccessKey"])
