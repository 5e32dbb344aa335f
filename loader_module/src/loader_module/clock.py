"""The clock seam: wall time for reports and schedules, monotonic time for throttling, and sleeping."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC wall-clock time (what reports and `nextRetryAt` carry)."""
        ...

    def monotonic(self) -> float: ...

    async def sleep_until(self, when: datetime) -> None:
        """Return at `when` (at once if it is past); cancellable."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep_until(self, when: datetime) -> None:
        delay = (when - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
