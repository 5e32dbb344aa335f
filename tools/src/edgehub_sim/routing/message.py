"""What routing sees of a message, and what it decides to do with it."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

#: edgeHub's source for twin change notifications (matched by ``/*`` and ``/twinChangeNotifications``).
TWIN_CHANGE_SOURCE = "/twinChangeNotifications"


@dataclass(frozen=True)
class Sink:
    """Where a route delivers: IoT Hub (``$upstream``) or a module input."""

    kind: Literal["upstream", "module"]
    module: str | None = None
    input: str | None = None

    def __str__(self) -> str:
        if self.kind == "upstream":
            return "$upstream"
        return f'BrokeredEndpoint("/modules/{self.module}/inputs/{self.input}")'


UPSTREAM = Sink("upstream")


@dataclass(frozen=True)
class RoutableMessage:
    """A message a module sent, as the router needs it.

    ``system_properties`` uses the topic's keys (``$.on``, ``$.mid``, ``$.ct``, ...); ``output`` is
    ``$.on`` (``None`` for plain telemetry). ``twin_change_notification`` marks edgeHub's twin change
    notifications, whose route source is ``/twinChangeNotifications`` instead of a module path.
    """

    device_id: str
    module_id: str
    output: str | None
    body: bytes
    system_properties: Mapping[str, str]
    app_properties: Mapping[str, str]
    twin_change_notification: bool = False

    @property
    def source(self) -> str:
        """The route source path this message is matched against."""
        if self.twin_change_notification:
            return TWIN_CHANGE_SOURCE
        if self.output is None:
            return f"/messages/modules/{self.module_id}"
        return f"/messages/modules/{self.module_id}/outputs/{self.output}"

    def forwarded_system_properties(self) -> dict[str, str]:
        """System properties for delivery to a module input: the sender's minus ``$.on``, plus
        ``$.cdid`` and ``$.cmid`` (the sender's device and module), as edgeHub forwards them."""
        forwarded = {k: v for k, v in self.system_properties.items() if k != "$.on"}
        forwarded["$.cdid"] = self.device_id
        forwarded["$.cmid"] = self.module_id
        return forwarded


@dataclass(frozen=True)
class Delivery:
    """One copy of a message for one sink, with the winning route's priority and TTL."""

    sink: Sink
    priority: int
    ttl_secs: int
    route_name: str
