"""The desired-state tracker: the latest desired properties and their `$version`, kept from the whole twin
read at start, the patches after it, and a periodic re-read of the whole twin.

Patches are JSON merge patches (RFC 7386) merged into the last whole twin; a patch whose `$version` the
twin read already contains is dropped. Patches that arrive before the twin is read wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from edge_shared.desired import DesiredModel, desired_is_empty, parse_desired
from edge_shared.edgehub import EdgeHubClient, Twin
from edge_shared.errors import InvalidDesiredError
from edge_shared.merge_patch import merge_patch
from loader_module.clock import Clock
from loader_module.decide import Desired, InvalidDesired, NoDesired

logger = logging.getLogger(__name__)

#: How often the whole twin is re-read to catch desired patches lost while the link was down.
TWIN_REFRESH_SECONDS = 600.0


class DesiredTracker:
    """Holds the latest desired section; used on the event loop only."""

    def __init__(self, edgehub: EdgeHubClient, clock: Clock, *, allow_insecure_http: bool) -> None:
        self._edgehub = edgehub
        self._clock = clock
        self._allow_insecure_http = allow_insecure_http
        self._properties: dict[str, Any] = {}
        self._version: int | None = None
        self._early: list[Mapping[str, Any]] | None = []
        self._read = asyncio.Event()

    @property
    def version(self) -> int | None:
        """The desired `$version` the latest state comes from."""
        return self._version

    def read_twin(self, twin: Twin) -> None:
        """Take the whole twin read at start, then the patches that arrived before it."""
        self._properties, self._version = dict(twin.desired), twin.desired_version
        early, self._early = self._early or [], None
        for patch in early:
            self.merge(patch)
        self._read.set()

    async def twin_read(self) -> None:
        """Until the whole twin has been read (inputs queued while disconnected need it to be judged)."""
        await self._read.wait()

    def merge(self, patch: Mapping[str, Any]) -> bool:
        """Merge a desired patch; True when it changed what is desired (False: queued, or already seen)."""
        if self._early is not None:
            self._early.append(patch)
            return False
        version = patch.get("$version")
        if isinstance(version, int) and self._version is not None and version <= self._version:
            return False  # already part of the twin we read
        self._properties = merge_patch(self._properties, patch)
        if isinstance(version, int):
            self._version = version
        return True

    def latest(self) -> Desired:
        """The latest desired state, parsed (twin metadata like `$version` is ignored)."""
        props = {key: value for key, value in self._properties.items() if not key.startswith("$")}
        if desired_is_empty(props):
            return NoDesired()
        try:
            return parse_desired(props, allow_insecure_http=self._allow_insecure_http)
        except InvalidDesiredError as exc:
            return InvalidDesired(tuple(exc.fields), str(exc))

    def latest_model(self) -> DesiredModel | None:
        """The latest desired model, or None when nothing valid is desired."""
        latest = self.latest()
        return latest if isinstance(latest, DesiredModel) else None

    async def refresh_forever(self, on_newer: Callable[[], Awaitable[None]]) -> None:
        """Re-read the whole twin now and then: the SDK does not replay patches sent while the link was
        down, so without this a device could sit on an old desired state until its next restart."""
        while True:
            await self._clock.sleep_until(self._clock.now() + timedelta(seconds=TWIN_REFRESH_SECONDS))
            try:
                twin = await self._edgehub.get_twin()
            except Exception as exc:  # any SDK failure: the link is down; try again next time
                logger.warning("twin refresh failed", extra={"error": type(exc).__name__})
                continue
            version = twin.desired_version
            if version is not None and self._version is not None and version <= self._version:
                continue
            logger.info("twin refresh found a newer desired state", extra={"twin_version": version})
            self._properties, self._version = dict(twin.desired), version
            await on_newer()
