"""IoT Hub's throttle on configuration writes (20 a minute per unit on S1-S3), opt-in in the simulator so
that clients can prove their bounded retry on 429 against a real server.

A sliding window: a write is accepted while fewer than `per_minute` writes were accepted in the last 60 s;
otherwise 429 `ThrottlingException` with `Retry-After` (whole seconds until the oldest one leaves the window).
"""

import math
import time
from collections import deque
from collections.abc import Callable

from edgehub_sim.errors import HubRequestError

WINDOW_SECS = 60.0


class WriteThrottle:
    """Counts accepted configuration writes; `per_minute=None` never throttles."""

    def __init__(self, per_minute: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute is not None and per_minute < 1:
            raise ValueError("configuration writes per minute must be at least 1")
        self._limit = per_minute
        self._clock = clock
        self._accepted: deque[float] = deque()

    def admit(self) -> None:
        """Record a write, or raise 429 when the window is full (the write must then not happen)."""
        if self._limit is None:
            return
        now = self._clock()
        while self._accepted and now - self._accepted[0] >= WINDOW_SECS:
            self._accepted.popleft()
        if len(self._accepted) >= self._limit:
            wait = max(1, math.ceil(WINDOW_SECS - (now - self._accepted[0])))
            raise HubRequestError(
                429,
                "ThrottlingException",
                f"more than {self._limit} configuration writes a minute; retry in {wait} s",
                retry_after=wait,
            )
        self._accepted.append(now)
