"""Waiting for the inference module's word on the version just announced, before reporting `ready`.

`ready` promises a version that serves. The inference module says `serving` (routed `InferenceStatus`)
once it has swapped the version in, or `rejected`, which cancels the waiting update (see `rejection`).
Without a word within the bound (no inference module, no route) the update reports `ready` anyway.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)


class ServingWatch:
    """One expected version at a time (updates run one at a time); used on the event loop only."""

    def __init__(self) -> None:
        self._version: str | None = None
        self._heard = asyncio.Event()

    def expect(self, version: str) -> None:
        """Call before announcing: the word may come before the announcement call returns."""
        self._version = version
        self._heard = asyncio.Event()

    def heard_serving(self, version: str) -> None:
        if version == self._version:
            self._heard.set()

    async def wait(self, within: float) -> bool:
        """True once the inference module said it serves the expected version; False after `within` s."""
        try:
            if within <= 0:
                return False
            try:
                await asyncio.wait_for(self._heard.wait(), within)
            except TimeoutError:
                logger.warning(
                    "no word from the inference module on the new version; reporting ready",
                    extra={"model_version": self._version, "waited_seconds": within},
                )
                return False
            return True
        finally:
            self._version = None
