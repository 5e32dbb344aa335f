"""The small interface both modules use to talk to edgeHub; only `azure_edgehub` imports the SDK.

Handlers are given to `connect` (not set later) because edgeHub delivers queued input messages right
after the connection is accepted: a handler registered afterwards would miss them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, Field


class Twin(BaseModel):
    """A module twin's two sections, each with its `$version`."""

    desired: dict[str, Any] = Field(default_factory=dict)
    reported: dict[str, Any] = Field(default_factory=dict)

    @property
    def desired_version(self) -> int | None:
        value = self.desired.get("$version")
        return value if isinstance(value, int) else None


@dataclass(frozen=True)
class InputMessage:
    """A message routed to one of this module's inputs."""

    input_name: str
    data: bytes
    content_type: str | None = None
    content_encoding: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    custom_properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputMessage:
    """A message for one of this module's outputs; edgeHub routes it."""

    data: bytes
    content_type: str = "application/json"
    content_encoding: str = "utf-8"
    message_id: str | None = None
    correlation_id: str | None = None
    custom_properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodRequest:
    name: str
    payload: Any
    request_id: str = ""


@dataclass(frozen=True)
class MethodResponse:
    status: int
    payload: Any = None


DesiredPatchHandler = Callable[[dict[str, Any]], Awaitable[None]]
InputHandler = Callable[[InputMessage], Awaitable[None]]
MethodHandler = Callable[[MethodRequest], Awaitable[MethodResponse]]


@dataclass(frozen=True)
class Handlers:
    """What a module wants to be told; each handler runs on the caller's event loop."""

    on_desired_patch: DesiredPatchHandler | None = None
    on_input: InputHandler | None = None
    on_method: MethodHandler | None = None


class EdgeHubClient(Protocol):
    """What the modules need from edgeHub. Implementations: the Azure SDK adapter and test fakes."""

    async def connect(self, handlers: Handlers) -> None:
        """Connect and start delivering to `handlers` (on the event loop that called `connect`)."""
        ...

    async def get_twin(self) -> Twin: ...

    async def patch_reported(self, patch: Mapping[str, Any]) -> None:
        """Apply a JSON merge patch to the reported properties (`None` deletes a key)."""
        ...

    async def send_output(self, output_name: str, message: OutputMessage) -> None: ...

    async def shutdown(self) -> None:
        """Disconnect and release the client; safe to call twice."""
        ...
