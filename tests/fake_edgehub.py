"""An in-process `EdgeHubClient` for unit tests of module logic (no network, no SDK).

It keeps a twin, records reported patches and outputs, and lets a test deliver desired patches, input
messages and method calls to the handlers exactly as the Azure adapter would: on the module's loop.
Integration tests use the real SDK against the simulator instead.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_shared.edgehub import Handlers, InputMessage, MethodRequest, MethodResponse, OutputMessage, Twin
from edge_shared.merge_patch import apply_patch


@dataclass
class SentOutput:
    output_name: str
    message: OutputMessage


@dataclass
class FakeEdgeHubClient:
    """Records what a module does; `fail_*` flags make the next calls raise `ConnectionError`."""

    desired: dict[str, Any] = field(default_factory=lambda: {"$version": 1})
    reported: dict[str, Any] = field(default_factory=lambda: {"$version": 1})
    reported_patches: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[SentOutput] = field(default_factory=list)
    handlers: Handlers | None = None
    connected: bool = False
    shutdown_called: bool = False
    fail_send: bool = False
    fail_patch: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self, handlers: Handlers) -> None:
        self.handlers = handlers
        self.connected = True

    async def get_twin(self) -> Twin:
        self._require()
        return Twin(desired=copy.deepcopy(self.desired), reported=copy.deepcopy(self.reported))

    async def patch_reported(self, patch: Mapping[str, Any]) -> None:
        self._require()
        if self.fail_patch:
            raise ConnectionError("fake: reported patch failed")
        self.reported_patches.append(copy.deepcopy(dict(patch)))
        apply_patch(self.reported, patch)
        self.reported["$version"] = int(self.reported.get("$version", 1)) + 1
        self._notify()

    async def send_output(self, output_name: str, message: OutputMessage) -> None:
        self._require()
        if self.fail_send:
            raise ConnectionError("fake: send failed")
        self.outputs.append(SentOutput(output_name, message))
        self._notify()

    async def shutdown(self) -> None:
        self.connected = False
        self.shutdown_called = True

    # --- test side -------------------------------------------------------------------------------
    async def push_desired(self, patch: Mapping[str, Any]) -> None:
        """Apply a desired patch and deliver it, with `$version`, to the module's handler."""
        apply_patch(self.desired, patch)
        self.desired["$version"] = int(self.desired.get("$version", 1)) + 1
        delivered = {**copy.deepcopy(dict(patch)), "$version": self.desired["$version"]}
        if self.handlers and self.handlers.on_desired_patch:
            await self.handlers.on_desired_patch(delivered)

    async def deliver_input(self, message: InputMessage) -> None:
        if self.handlers is None or self.handlers.on_input is None:
            raise RuntimeError("module registered no input handler")
        await self.handlers.on_input(message)

    async def call_method(self, name: str, payload: Any = None) -> MethodResponse:
        if self.handlers is None or self.handlers.on_method is None:
            return MethodResponse(status=404, payload={"error": "not subscribed to methods"})
        return await self.handlers.on_method(MethodRequest(name=name, payload=payload, request_id="1"))

    def outputs_to(self, output_name: str) -> list[OutputMessage]:
        return [sent.message for sent in self.outputs if sent.output_name == output_name]

    async def wait_until(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait (bounded) until `predicate()` holds, re-checking after every patch or output."""
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def _notify(self) -> None:
        self.changed.set()

    def _require(self) -> None:
        if not self.connected:
            raise ConnectionError("fake: not connected")
