"""Thread-safe control of a running simulator, for tests and the local stack.

Calls are marshalled onto the simulator's event loop; reads of twins and records use their own locks.
"""

import asyncio
import copy
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from edgehub_sim.hub import Hub
from edgehub_sim.methods import MethodResult
from edgehub_sim.records import RecordedMessage

T = TypeVar("T")

#: Longest a control call waits for the simulator's loop (method calls add their own timeout).
CALL_TIMEOUT_SECS = 30.0


class SimulatorControl:
    """The control surface of one running simulator."""

    def __init__(self, loop: asyncio.AbstractEventLoop, hub: Hub) -> None:
        self._loop = loop
        self._hub = hub

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_SECS) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _call(self, function: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return function()

        return self._run(wrapper())

    def set_desired(self, module: str, patch: dict[str, Any]) -> int:
        """Merge a desired patch (as the service API would) and push it; returns `$version`."""
        return self._call(lambda: self._hub.set_desired(module, patch))

    def desired(self, module: str) -> dict[str, Any]:
        """The desired section, without `$version`."""
        return copy.deepcopy(self._hub.twins.get(module).desired)

    def reported(self, module: str) -> dict[str, Any]:
        """The reported section, without `$version`."""
        return copy.deepcopy(self._hub.twins.get(module).reported)

    def twin(self, module: str) -> dict[str, Any]:
        """The twin in IoT Hub's service format (with both `$version`s)."""
        return self._call(lambda: self._hub.service_twin(module))

    def invoke_method(
        self,
        module: str,
        name: str,
        payload: Any = None,
        timeout: float = 30.0,
        connect_timeout: float = 0.0,
    ) -> MethodResult:
        """Call a direct method; raises MethodError (404 not listening, 504 timeout).

        `connect_timeout` waits that long for an offline module to connect and subscribe first.
        """
        return self._run(
            self._hub.invoke_method(module, name, payload, timeout, connect_timeout),
            timeout + connect_timeout + CALL_TIMEOUT_SECS,
        )

    def upstream_messages(self) -> list[RecordedMessage]:
        """Messages routed to `$upstream`, in arrival order."""
        return self._hub.log.snapshot("upstream")

    def routed_messages(self) -> list[RecordedMessage]:
        """Messages routed to module inputs (recorded when queued), in arrival order."""
        return self._hub.log.snapshot("module")

    def connected(self, module: str) -> bool:
        """Is the module connected now?"""
        return self._call(lambda: self._hub.connected(module))

    def connect_count(self, module: str) -> int:
        """Accepted CONNECTs of the module since the simulator started."""
        return self._call(lambda: self._hub.connect_count(module))

    def methods_awaiting(self, module: str) -> int:
        """Method calls waiting (connectTimeoutInSeconds) for the module to connect and listen."""
        return self._call(lambda: self._hub.methods_awaiting(module))

    def queued(self, module: str) -> int:
        """Messages for the module not yet acknowledged by it."""
        return self._call(lambda: self._hub.queued(module))

    def disconnect(self, module: str) -> bool:
        """Drop the module's connection from the server side; False if it was not connected."""
        return self._run(self._hub.disconnect(module))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds, re-checking on every simulator change; TimeoutError."""
        if not self._hub.feed.wait_for(predicate, timeout):
            raise TimeoutError(f"condition not met within {timeout} s")
