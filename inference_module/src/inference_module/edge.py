"""edgeHub wiring: routed `DLModelInput` messages become swaps; every swap is reported as `ActiveModel`.

The service keeps serving whatever happens here: a connection that fails is retried in the background,
and a report that fails is logged (the next swap or reconnection reports again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from edge_shared.edgehub import EdgeHubClient, Handlers, InputMessage
from edge_shared.messages import INPUT_MODEL
from inference_module.errors import ModelError
from inference_module.service import ModelService
from inference_module.slot import ModelIdentity, ModelSlot

logger = logging.getLogger(__name__)

ACTIVE_MODEL_KEY = "ActiveModel"
_RETRY_INITIAL = 1.0
_RETRY_MAX = 60.0


class EdgeLink:
    """Connects the module to edgeHub for as long as the app runs."""

    def __init__(
        self,
        client: EdgeHubClient,
        service: ModelService,
        slot: ModelSlot,
        *,
        retry_initial: float = _RETRY_INITIAL,
    ) -> None:
        self._client = client
        self._retry_initial = retry_initial
        self._service = service
        self._slot = slot
        self._connected = False
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        """Connect now; on failure keep serving and retry in the background."""
        self._service.add_listener(self._report)
        try:
            await self._connect()
        except Exception:
            logger.exception("edgeHub connection failed; serving standalone and retrying")
            self._task = asyncio.create_task(self._reconnect(), name="edgehub-reconnect")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self._client.shutdown()
        except Exception:
            logger.exception("edgeHub client shutdown failed")

    async def _connect(self) -> None:
        await self._client.connect(Handlers(on_input=self._on_input))
        self._connected = True
        logger.info("connected to edgeHub")
        serving = self._slot.current
        if serving is not None:
            await self._report(serving.identity)

    async def _reconnect(self) -> None:
        delay = self._retry_initial
        while not self._connected:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except Exception:
                logger.warning("edgeHub connection failed again", exc_info=True)
                delay = min(max(delay * 2, self._retry_initial), _RETRY_MAX)

    async def _on_input(self, message: InputMessage) -> None:
        if message.input_name != INPUT_MODEL:
            logger.warning("message on an unknown input ignored", extra={"input_name": message.input_name})
            return
        try:
            await self._service.load_announcement(message.data)
        except ModelError:
            return  # logged and counted by the service; the old model keeps serving

    async def _report(self, identity: ModelIdentity) -> None:
        if not self._connected:
            return
        try:
            await self._client.patch_reported({ACTIVE_MODEL_KEY: identity.active_model().to_twin()})
        except Exception:
            logger.exception("reporting ActiveModel failed")
