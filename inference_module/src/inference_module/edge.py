"""edgeHub wiring: routed `DLModelInput` messages become swaps; every swap is reported as `ActiveModel`
and, through the `InferenceStatus` output, to the loader, which is also told of every version refused.

The service keeps serving whatever happens here: a connection that fails is retried in the background,
and a report that fails is logged (the next swap or reconnection reports again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from edge_shared.edgehub import EdgeHubClient, Handlers, InputMessage, OutputMessage
from edge_shared.messages import INPUT_MODEL, OUTPUT_INFERENCE_STATUS, InferenceStatus
from edge_shared.redaction import redact
from inference_module.errors import InferenceError, ModelError
from inference_module.service import ModelService
from inference_module.slot import ModelIdentity, ModelSlot

logger = logging.getLogger(__name__)

ACTIVE_MODEL_KEY = "ActiveModel"
_RETRY_INITIAL = 1.0
_RETRY_MAX = 60.0
#: Refusals kept while disconnected (the newest win): enough for a start-up that tried every version.
_PENDING_MAX = 8


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
        self._watching = False
        self._pending: dict[str, tuple[str, str]] = {}

    @property
    def connected(self) -> bool:
        return self._connected

    def watch(self) -> None:
        """Follow the service's swaps and refusals (before the first load, so none is missed)."""
        if not self._watching:
            self._watching = True
            self._service.add_listener(self._report)
            self._service.add_refused_listener(self._refused)

    async def start(self) -> None:
        """Connect now; on failure keep serving and retry in the background."""
        self.watch()
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
        pending, self._pending = self._pending, {}
        for version, (code, message) in pending.items():
            await self._send_refused(version, code, message)
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
        await self._send(InferenceStatus(state="serving", version=identity.version))

    async def _refused(self, version: str, exc: InferenceError) -> None:
        message = redact(str(exc))[:512]
        if not self._connected:
            self._pending.pop(version, None)
            self._pending[version] = (exc.code, message)
            while len(self._pending) > _PENDING_MAX:
                del self._pending[next(iter(self._pending))]
            return
        await self._send_refused(version, exc.code, message)

    async def _send_refused(self, version: str, code: str, message: str) -> None:
        serving = self._slot.current
        await self._send(
            InferenceStatus(
                state="rejected",
                version=version,
                code=code,
                message=message,
                serving_version=serving.identity.version if serving is not None else None,
            )
        )

    async def _send(self, status: InferenceStatus) -> None:
        """Tell the loader; a lost message is logged (the next swap, refusal or reconnection tells again)."""
        try:
            body = OutputMessage(data=status.to_json_bytes())
            await self._client.send_output(OUTPUT_INFERENCE_STATUS, body)
        except Exception:
            logger.exception("sending InferenceStatus failed", extra={"state": status.state})
