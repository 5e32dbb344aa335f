"""What the loader reads of its volume and reports about it, and what it remembers having said:
announcements (and the version announced last), `ready` on a version already installed, refusals,
failures told again, `getStatus`. It is also the update runner's `UpdateEvents`, so that everything the
twin hears goes through one place.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from edge_shared.desired import DesiredModel
from edge_shared.errors import RepositoryError
from edge_shared.messages import ModelStatusEvent
from edge_shared.reported import ErrorCode, ModelUpdate, Source, UpdateError, UpdateState
from edge_shared.repository import ModelManifest, ModelRepository
from loader_module.clock import Clock
from loader_module.decide import Desired, Installed
from loader_module.failures import Failure
from loader_module.install import activate
from loader_module.rejection import Rejection, protected_versions
from loader_module.reporting import LoaderStatus, Reporter
from loader_module.runner import UpdateJob
from loader_module.serving import ServingWatch
from loader_module.state import StateKeeper, UpdateRecord, target_key
from loader_module.tracker import DesiredTracker

logger = logging.getLogger(__name__)


class Outcomes:
    """Reports through `Reporter`, reads the volume, keeps `announced_version` in the persisted state."""

    def __init__(
        self,
        reporter: Reporter,
        repo: ModelRepository,
        keeper: StateKeeper,
        tracker: DesiredTracker,
        clock: Clock,
        serve_confirm_timeout: float,
    ) -> None:
        self.reporter = reporter
        self._repo = repo
        self._keeper = keeper
        self._tracker = tracker
        self._clock = clock
        self._serve_confirm_timeout = serve_confirm_timeout
        #: The inference module's word on the version just announced (fed by the coordinator).
        self.serving = ServingWatch()

    # --- the volume as it is -----------------------------------------------------------------------
    async def inventory(self, update: ModelUpdate, *, latest: str | None = None) -> None:
        """Report `update` with the installed versions (and `latest` as the latest file name)."""
        installed = await asyncio.to_thread(self._repo.installed_versions)
        await self.reporter.inventory(update, installed, latest_file_name=latest)

    async def idle(self) -> None:
        await self.inventory(ModelUpdate(desired_version=self._tracker.version))

    async def local(
        self,
        manifest: ModelManifest | None,
        *,
        file_name: str | None = None,
        finished: datetime | None = None,
    ) -> None:
        """`ready` on a version already on the volume: installed before, or made current again (then
        `finished` is set and it is the latest file name too)."""
        await self.inventory(
            ModelUpdate(
                state=UpdateState.READY,
                file_name=file_name or (manifest.file_name if manifest else None),
                version=manifest.version if manifest else None,
                desired_version=self._tracker.version,
                source="local",
                finished_at=finished,
            ),
            latest=manifest.file_name if manifest is not None and finished is not None else None,
        )

    async def current_manifest(self) -> ModelManifest | None:
        try:
            current = await asyncio.to_thread(self._repo.current_version)
            return await asyncio.to_thread(self._repo.read_manifest, current) if current else None
        except RepositoryError:
            return None

    async def installed(self, wanted: Desired) -> Installed:
        """What `decide` needs to know of the volume: `current`, and the desired version's manifest when
        that version is installed and readable."""
        if not isinstance(wanted, DesiredModel) or not self._repo.is_installed(wanted.version):
            return Installed(current=None, manifests={})
        try:
            manifest = await asyncio.to_thread(self._repo.read_manifest, wanted.version)
        except RepositoryError:
            return Installed(current=None, manifests={})
        current = await asyncio.to_thread(self._repo.current_version)
        return Installed(current=current, manifests={wanted.version: manifest})

    async def file_name_of(self, version: str) -> str | None:
        if not self._repo.is_installed(version):
            return None
        try:
            return (await asyncio.to_thread(self._repo.read_manifest, version)).file_name
        except RepositoryError:
            return None

    async def status(self) -> dict[str, Any]:
        """`getStatus`'s answer."""
        installed = await asyncio.to_thread(self._repo.installed_versions)
        try:
            current = await asyncio.to_thread(self._repo.current_version)
        except RepositoryError:
            current = None
        return LoaderStatus(
            model_update=self.reporter.update, installed_models=installed, current_version=current
        ).to_patch()

    async def make_current(self, version: str) -> ModelManifest:
        """Point `current` at an installed version and announce it."""
        manifest = await asyncio.to_thread(self._repo.read_manifest, version)
        await asyncio.to_thread(activate, self._repo, version)
        await self.announce_once(manifest)
        return manifest

    async def announce_once(self, manifest: ModelManifest) -> None:
        """Send `DLModelOutput`; remember the version once edgeHub accepted it."""
        if await self.reporter.announce(manifest):
            self._keeper.state.announced_version = manifest.version
            await self._keeper.save()

    async def reannounce_if_needed(self) -> None:
        """The last announcement may have been lost (crash between install and send): send it again."""
        try:
            current = await asyncio.to_thread(self._repo.current_version)
            if current is None or current == self._keeper.state.announced_version:
                return
            manifest = await asyncio.to_thread(self._repo.read_manifest, current)
        except RepositoryError:
            logger.warning("the current version is unreadable; not announced")
            return
        await self.announce_once(manifest)
        await self.reporter.latest_file_name(manifest.file_name)

    # --- failures and refusals ---------------------------------------------------------------------
    async def invalid_desired(self, message: str) -> None:
        await self.reporter.failed(
            ErrorCode.INVALID_DESIRED,
            message,
            file_name=None,
            version=None,
            desired_version=self._tracker.version,
            started=self._clock.now(),
            next_retry=None,
            source=None,
            bytes_downloaded=0,
        )

    async def failed_before(self, record: UpdateRecord, desired: DesiredModel) -> None:
        """A persisted failure, reported again as it stands (after a restart, or the same desired state)."""
        await self.reporter.failed_before(
            code=record.error_code or str(ErrorCode.INTERNAL),
            message=record.error_message or "",
            file_name=desired.file_name,
            version=desired.version,
            desired_version=self._tracker.version,
            next_retry=record.next_retry_at,
        )

    async def rejected(self, rejection: Rejection, *, latest: str | None = None) -> None:
        await self.inventory(
            ModelUpdate(
                state=UpdateState.REJECTED,
                file_name=rejection.file_name,
                version=rejection.version,
                desired_version=self._tracker.version,
                error=UpdateError(code=rejection.code, message=rejection.message),
                source="local",
                finished_at=self._clock.now(),
            ),
            latest=latest,
        )

    async def rejected_event(self, rejection: Rejection) -> None:
        await self.reporter.status_event(
            ModelStatusEvent(
                state=UpdateState.REJECTED,
                version=rejection.version,
                file_name=rejection.file_name,
                error=UpdateError(code=rejection.code, message=rejection.message),
                duration_seconds=0.0,
                bytes_downloaded=0,
                source="local",
            )
        )

    # --- what the runner tells (`runner.UpdateEvents`) ---------------------------------------------
    async def begun(self, update: ModelUpdate) -> None:
        await self.reporter.show(update)

    async def stage(self, state: UpdateState) -> None:
        await self.reporter.stage(state)

    async def restarted(self, source: Source, bytes_total: int | None) -> None:
        await self.reporter.restart_progress(source, bytes_total)

    async def progress(
        self, bytes_done: int, bytes_total: int | None, percent: float | None, attempt: int
    ) -> None:
        await self.reporter.progress(bytes_done, bytes_total, percent, attempt)

    def retained(self, installing: str) -> frozenset[str]:
        """The versions that served last, and the base of the latest desired `Delta` when that target is
        not the one being installed (or the delta could not be applied)."""
        kept = protected_versions(self._keeper.state.served_versions)
        desired = self._tracker.latest_model()
        if desired is None or desired.delta is None or target_key(desired) == installing:
            return kept
        return kept | {desired.delta.base_version}

    async def announce(self, manifest: ModelManifest) -> None:
        self.serving.expect(manifest.version)
        await self.announce_once(manifest)
        if self._keeper.state.announced_version == manifest.version:  # a refusal cancels this wait
            await self.serving.wait(self._serve_confirm_timeout)

    async def ready(
        self, job: UpdateJob, manifest: ModelManifest, *, started: datetime, fetched: int, source: Source
    ) -> None:
        finished = self._clock.now()
        await self.inventory(self.reporter.ended(finished), latest=manifest.file_name)
        await self.reporter.status_event(
            ModelStatusEvent(
                state=UpdateState.READY,
                version=job.desired.version,
                file_name=job.desired.file_name,
                error=None,
                duration_seconds=max(0.0, (finished - started).total_seconds()),
                bytes_downloaded=fetched,
                source=source,
            )
        )

    async def failed(
        self, job: UpdateJob, failure: Failure, *, started: datetime, next_retry: datetime | None
    ) -> None:
        last = self.reporter.update
        await self.reporter.failed(
            failure.code,
            failure.message,
            file_name=job.desired.file_name,
            version=job.desired.version,
            desired_version=self._tracker.version,
            started=started,
            next_retry=next_retry,
            source=last.source or "full",
            bytes_downloaded=last.bytes_done,
        )
