"""What the loader tells: reported properties (through `LoaderReported` and `ModelUpdate`) and the two
output messages (architecture §4-5).

`ModelUpdate` changes only through the typed methods below, each building a whole new model, so that a
renamed field fails the type check instead of vanishing from the twin.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import Enum
from typing import TypeVar

from pydantic import Field

from edge_shared.edgehub import EdgeHubClient, OutputMessage
from edge_shared.messages import (
    JSON_CONTENT_TYPE,
    OUTPUT_MODEL,
    OUTPUT_STATUS,
    ModelAnnouncement,
    ModelStatusEvent,
)
from edge_shared.names import Version
from edge_shared.reported import ErrorCode, LoaderReported, ModelUpdate, Source, UpdateError, UpdateState
from edge_shared.repository import MODELS_DIR, ModelManifest
from loader_module.clock import Clock
from loader_module.failures import reportable
from loader_module.progress import ProgressThrottle

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class _Keep(Enum):
    KEEP = "keep"


_KEEP = _Keep.KEEP


def _pick(new: _T | _Keep, old: _T) -> _T:
    return old if isinstance(new, _Keep) else new


def evolve(
    last: ModelUpdate,
    *,
    state: UpdateState | _Keep = _KEEP,
    file_name: str | None | _Keep = _KEEP,
    version: str | None | _Keep = _KEEP,
    desired_version: int | None | _Keep = _KEEP,
    bytes_done: int | _Keep = _KEEP,
    bytes_total: int | None | _Keep = _KEEP,
    percent: float | None | _Keep = _KEEP,
    attempt: int | _Keep = _KEEP,
    error: UpdateError | None | _Keep = _KEEP,
    next_retry_at: datetime | None | _Keep = _KEEP,
    source: Source | None | _Keep = _KEEP,
    started_at: datetime | None | _Keep = _KEEP,
    finished_at: datetime | None | _Keep = _KEEP,
) -> ModelUpdate:
    """`last` with the given fields changed: a typed, validated `model_copy(update=...)`."""
    return ModelUpdate(
        state=_pick(state, last.state),
        file_name=_pick(file_name, last.file_name),
        version=_pick(version, last.version),
        desired_version=_pick(desired_version, last.desired_version),
        bytes_done=_pick(bytes_done, last.bytes_done),
        bytes_total=_pick(bytes_total, last.bytes_total),
        percent=_pick(percent, last.percent),
        attempt=_pick(attempt, last.attempt),
        error=_pick(error, last.error),
        next_retry_at=_pick(next_retry_at, last.next_retry_at),
        source=_pick(source, last.source),
        started_at=_pick(started_at, last.started_at),
        finished_at=_pick(finished_at, last.finished_at),
    )


class LoaderStatus(LoaderReported):
    """`getStatus`'s answer: the loader's reported section and the version `current` names."""

    current_version: Version | None = Field(default=None, alias="CurrentVersion")


class Reporter:
    """Sends reported-property patches and messages. Reporting is best effort: a failed patch is logged
    and superseded by the next one (the update itself must not fail because edgeHub is briefly away)."""

    def __init__(self, edgehub: EdgeHubClient, clock: Clock, progress_interval: float) -> None:
        self._edgehub = edgehub
        self._clock = clock
        self._update = ModelUpdate()
        self._throttle = ProgressThrottle(clock, progress_interval, self._publish)

    @property
    def update(self) -> ModelUpdate:
        """The last `ModelUpdate` reported (or about to be, while progress is throttled)."""
        return self._update

    # --- the update in progress ---------------------------------------------------------------------
    async def show(self, update: ModelUpdate) -> None:
        """Report `update` as it is; progress reports start afresh."""
        self._update = update
        self._throttle.reset()
        await self._publish()

    async def stage(self, state: UpdateState) -> None:
        await self.show(evolve(self._update, state=state))

    async def restart_progress(self, source: Source, bytes_total: int | None) -> None:
        """The bytes start again from zero, now from `source` (a delta, or the full ZIP after it)."""
        await self.show(
            evolve(
                self._update, source=source, bytes_done=0, bytes_total=bytes_total, percent=None, attempt=0
            )
        )

    async def progress(
        self, bytes_done: int, bytes_total: int | None, percent: float | None, attempt: int
    ) -> None:
        """Throttled: at most one report per interval, always one when the attempt changes."""
        changed_attempt = attempt != self._update.attempt
        self._update = evolve(
            self._update, bytes_done=bytes_done, bytes_total=bytes_total, percent=percent, attempt=attempt
        )
        if changed_attempt:
            await self._throttle.force()
        else:
            await self._throttle.tick()

    async def failed(
        self,
        code: ErrorCode,
        message: str,
        *,
        file_name: str | None,
        version: str | None,
        desired_version: int | None,
        started: datetime,
        next_retry: datetime | None,
        source: Source | None,
        bytes_downloaded: int,
    ) -> None:
        """Report a failed update (progress as it stood) and send its status event."""
        finished = self._clock.now()
        error = UpdateError(code=str(code), message=reportable(message))
        await self.show(
            evolve(
                self._update,
                state=UpdateState.FAILED,
                file_name=file_name,
                version=version,
                desired_version=desired_version,
                error=error,
                next_retry_at=next_retry,
                finished_at=finished,
                source=source,
                started_at=started,
            )
        )
        await self.status_event(
            ModelStatusEvent(
                state=UpdateState.FAILED,
                version=version,
                file_name=file_name,
                error=error,
                duration_seconds=max(0.0, (finished - started).total_seconds()),
                bytes_downloaded=bytes_downloaded,
                source=source,
            )
        )

    async def failed_before(
        self,
        *,
        code: str,
        message: str,
        file_name: str,
        version: str,
        desired_version: int | None,
        next_retry: datetime | None,
    ) -> None:
        """Report a persisted failure again (after a restart, or the same desired state again)."""
        await self.show(
            evolve(
                self._update,
                state=UpdateState.FAILED,
                file_name=file_name,
                version=version,
                desired_version=desired_version,
                error=UpdateError(code=code, message=message),
                next_retry_at=next_retry,
                attempt=0,
            )
        )

    def ended(self, finished: datetime) -> ModelUpdate:
        """The update in progress as `ready`."""
        return evolve(
            self._update, state=UpdateState.READY, finished_at=finished, error=None, next_retry_at=None
        )

    # --- the whole loader section -------------------------------------------------------------------
    async def inventory(
        self, update: ModelUpdate, installed: list[str], *, latest_file_name: str | None = None
    ) -> None:
        """Report `update` with the installed versions (and the latest file name, when it changed)."""
        self._update = update
        if latest_file_name is None:
            await self.patch(LoaderReported(model_update=update, installed_models=installed))
        else:
            await self.patch(
                LoaderReported(
                    model_update=update, installed_models=installed, latest_file_name=latest_file_name
                )
            )

    async def latest_file_name(self, file_name: str) -> None:
        await self.patch(LoaderReported(latest_file_name=file_name))

    async def patch(self, reported: LoaderReported) -> bool:
        """Send the properties set on `reported` (the others keep their reported values)."""
        try:
            await self._edgehub.patch_reported(reported.to_patch())
        except Exception as exc:  # the SDK raises several unrelated types for a lost link
            logger.warning("reported-property patch failed", extra={"error": type(exc).__name__})
            return False
        return True

    async def _publish(self) -> None:
        await self.patch(LoaderReported(model_update=self._update))

    # --- messages -----------------------------------------------------------------------------------
    async def announce(self, manifest: ModelManifest) -> bool:
        """Send `DLModelOutput` for an installed version; True when edgeHub accepted it."""
        base = f"{MODELS_DIR}/{manifest.version}"
        body = ModelAnnouncement(
            local_model_path=f"{base}/{manifest.model_file}",
            local_labelmap_path=None if manifest.labels_file is None else f"{base}/{manifest.labels_file}",
            version=manifest.version,
            file_name=manifest.file_name,
            runtime=manifest.runtime,
            sha256=manifest.model_sha256,
        )
        return await self._send(OUTPUT_MODEL, body.to_json_bytes())

    async def status_event(self, event: ModelStatusEvent) -> bool:
        return await self._send(OUTPUT_STATUS, event.to_json_bytes())

    async def _send(self, output: str, data: bytes) -> bool:
        try:
            await self._edgehub.send_output(output, OutputMessage(data=data, content_type=JSON_CONTENT_TYPE))
        except Exception as exc:  # as above: any SDK failure means "not delivered, try again later"
            logger.warning("sending a message failed", extra={"output": output, "error": type(exc).__name__})
            return False
        return True
