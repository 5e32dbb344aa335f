"""Throttled progress: at most one report per interval while bytes flow, always one on a state change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from loader_module.clock import Clock


class ProgressThrottle:
    """Calls `publish` when `interval` seconds have passed since the last call, or when forced."""

    def __init__(self, clock: Clock, interval: float, publish: Callable[[], Awaitable[None]]) -> None:
        self._clock = clock
        self._interval = interval
        self._publish = publish
        self._last: float | None = None

    async def tick(self) -> bool:
        """Publish if due; returns whether it did."""
        now = self._clock.monotonic()
        if self._last is not None and now - self._last < self._interval:
            return False
        await self.force()
        return True

    def reset(self) -> None:
        """Start afresh: the next `tick` publishes (a new download begins)."""
        self._last = None

    async def force(self) -> None:
        self._last = self._clock.monotonic()
        await self._publish()
