"""Thread-safe control of a running simulator, for tests and the local stack.

Calls are marshalled onto the simulator's event loop; reads of twins and records use their own locks.
"""

import asyncio
import copy
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from edgehub_sim.deployments.configurations import public
from edgehub_sim.deployments.engine import CycleResult, DeploymentEngine
from edgehub_sim.hub import Hub
from edgehub_sim.methods import MethodResult
from edgehub_sim.records import RecordedMessage

T = TypeVar("T")

#: Longest a control call waits for the simulator's loop (method calls add their own timeout).
CALL_TIMEOUT_SECS = 30.0


class SimulatorControl:
    """The control surface of one running simulator."""

    def __init__(self, loop: asyncio.AbstractEventLoop, hub: Hub, engine: DeploymentEngine) -> None:
        self._loop = loop
        self._hub = hub
        self._engine = engine

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_SECS) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _call(self, function: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return function()

        return self._run(wrapper())

    def set_desired(self, module: str, patch: dict[str, Any], device: str | None = None) -> int:
        """Merge a desired patch (as the service API would) and push it; returns `$version`."""
        return self._call(lambda: self._hub.set_desired(module, patch, device))

    def desired(self, module: str, device: str | None = None) -> dict[str, Any]:
        """The desired section, without `$version`."""
        return copy.deepcopy(self._hub.twins.get(self._hub.identity.client_id(module, device)).desired)

    def reported(self, module: str, device: str | None = None) -> dict[str, Any]:
        """The reported section, without `$version`."""
        return copy.deepcopy(self._hub.twins.get(self._hub.identity.client_id(module, device)).reported)

    def twin(self, module: str, device: str | None = None) -> dict[str, Any]:
        """The twin in IoT Hub's service format (with both `$version`s)."""
        return self._call(lambda: self._hub.service_twin(module, device))

    def device_twin(self, device: str) -> dict[str, Any]:
        """A device twin in IoT Hub's service format (tags, desired properties)."""
        return self._call(lambda: self._hub.device_twin(device))

    def set_tags(self, device: str, tags: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch a device twin's tags (as `PATCH /twins/{device}` would); returns the twin."""

        def patch() -> dict[str, Any]:
            self._hub.device_twins.patch(device, tags, None, None)
            return self._hub.device_twin(device)

        return self._call(patch)

    def invoke_method(
        self,
        module: str,
        name: str,
        payload: Any = None,
        timeout: float = 30.0,
        connect_timeout: float = 0.0,
        device: str | None = None,
    ) -> MethodResult:
        """Call a direct method; raises MethodError (404 not listening, 504 timeout).

        `connect_timeout` waits that long for an offline module to connect and subscribe first.
        """
        return self._run(
            self._hub.invoke_method(module, name, payload, timeout, connect_timeout, device),
            timeout + connect_timeout + CALL_TIMEOUT_SECS,
        )

    def configuration(self, config_id: str) -> dict[str, Any]:
        """A configuration as `GET /configurations/{id}` returns it (with the latest metrics)."""
        return public(self._hub.configurations.get(config_id))

    def apply_deployments(self) -> CycleResult:
        """Run a deployment apply cycle now (as the periodic one does)."""
        return self._call(self._engine.apply)

    def deployment_cycles(self) -> int:
        """Apply cycles completed since start (wait for it to grow instead of sleeping)."""
        return self._engine.cycles

    def upstream_messages(self) -> list[RecordedMessage]:
        """Messages routed to `$upstream`, in arrival order."""
        return self._hub.log.snapshot("upstream")

    def routed_messages(self) -> list[RecordedMessage]:
        """Messages routed to module inputs (recorded when queued), in arrival order."""
        return self._hub.log.snapshot("module")

    def connected(self, module: str, device: str | None = None) -> bool:
        """Is the module connected now?"""
        return self._call(lambda: self._hub.connected(module, device))

    def connect_count(self, module: str, device: str | None = None) -> int:
        """Accepted CONNECTs of the module since the simulator started."""
        return self._call(lambda: self._hub.connect_count(module, device))

    def methods_awaiting(self, module: str, device: str | None = None) -> int:
        """Method calls waiting (connectTimeoutInSeconds) for the module to connect and listen."""
        return self._call(lambda: self._hub.methods_awaiting(module, device))

    def queued(self, module: str, device: str | None = None) -> int:
        """Messages for the module not yet acknowledged by it."""
        return self._call(lambda: self._hub.queued(module, device))

    def disconnect(self, module: str, device: str | None = None) -> bool:
        """Drop the module's connection from the server side; False if it was not connected."""
        return self._run(self._hub.disconnect(module, device))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds, re-checking on every simulator change; TimeoutError."""
        if not self._hub.feed.wait_for(predicate, timeout):
            raise TimeoutError(f"condition not met within {timeout} s")
