"""A serving model that fails request after request is refused like one that failed to load.

Warm-up runs the model on one sample frame; a model can still pass it and fail on real images. After
`INFERENCE_REJECT_AFTER_FAILURES` failures in a row of the same version, the refused-model listeners are
told once (the loader then puts the previous version back and announces it); a success resets the count.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from inference_module.errors import FailingModelError, InferenceError

logger = logging.getLogger(__name__)


class FailureStreak:
    """Counts the serving model's request failures in a row. Used on the event loop only."""

    def __init__(self, tell: Callable[[str, InferenceError], Awaitable[None]], limit: int) -> None:
        self._tell = tell
        self._limit = limit
        self._version: str | None = None
        self._count = 0

    def succeeded(self, version: str) -> None:
        if self._version == version:
            self._version, self._count = None, 0

    async def failed(self, version: str) -> None:
        if self._version != version:
            self._version, self._count = version, 0
        self._count += 1
        if self._limit == 0 or self._count != self._limit:
            return  # told once per streak, when it reaches the limit
        logger.error(
            "the serving model failed %d requests in a row; the loader is told to put the previous back",
            self._count,
            extra={"model_version": version, "code": FailingModelError.code},
        )
        await self._tell(version, FailingModelError(f"the model failed {self._count} requests in a row"))
