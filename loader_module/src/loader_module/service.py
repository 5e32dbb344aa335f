"""The loader's orchestration: reconcile the desired state, run one update at a time, retry later.

Only the latest desired state matters. An update runs as one task (`_Job`); a newer target cancels it
(the partial download stays for a later resume only if it is the same target). The install step is
shielded from cancellation so that shutdown finishes it rather than leaving it half done, although
every step is a rename and would be safe to cut anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from edge_shared.desired import DeltaSpec, DesiredModel, desired_is_empty, parse_desired
from edge_shared.edgehub import EdgeHubClient, Handlers, InputMessage
from edge_shared.errors import InvalidDesiredError, RepositoryError
from edge_shared.logs import log_context
from edge_shared.merge_patch import apply_patch
from edge_shared.messages import INPUT_INFERENCE_STATUS, InferenceStatus, ModelStatusEvent
from edge_shared.redaction import redact, redact_url
from edge_shared.reported import ErrorCode, ModelUpdate, Source, UpdateError, UpdateState
from edge_shared.repository import ModelManifest, ModelRepository
from loader_module.clock import Clock, SystemClock
from loader_module.decide import (
    AwaitNewUrl,
    Blocked,
    Desired,
    GiveUp,
    Idle,
    Install,
    Installed,
    InvalidDesired,
    NoDesired,
    RefuseDesired,
    ReportReady,
    RetryAt,
    StayRejected,
    StayRolledBack,
    WaitUntil,
    after_failure,
    decide,
    rollback_version,
)
from loader_module.delta import RebuiltZip, delta_part_path, rebuild_zip, rebuilt_zip_path, usable_base
from loader_module.download import Downloader, DownloadLimits, DownloadResult, discard
from loader_module.errors import DeltaUnusableError, LoaderError
from loader_module.failures import classify, reportable
from loader_module.install import (
    activate,
    apply_retention,
    clean_staging,
    install_version,
    share_installed,
)
from loader_module.progress import ProgressThrottle
from loader_module.rejection import Rejection, plan_rejection, protected_versions, remember_served
from loader_module.reporting import Reporter
from loader_module.serving import ServingWatch
from loader_module.settings import LoaderSettings
from loader_module.state import LoaderState, StateStore, UpdateRecord, target_key, url_digest
from loader_module.unpack import UnpackLimits, remove_tree, unpack_model
from loader_module.verify import check_signature_checkable, verify_digests, verify_signature

logger = logging.getLogger(__name__)

#: How often the whole twin is re-read to catch desired patches lost while the link was down.
TWIN_REFRESH_SECONDS = 600.0


@dataclass
class _Job:
    key: str
    desired: DesiredModel
    desired_version: int | None
    cycle: int
    wait_until: datetime | None = None
    new_url: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def running_for(self, desired: DesiredModel) -> bool:
        return self.key == target_key(desired) and self.task is not None and not self.task.done()


def _log_unexpected_end(task: asyncio.Task[None]) -> None:
    """An update task ends by returning or being cancelled; anything else is a bug worth a log line."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("update task ended with an unexpected error", exc_info=exc)


def _delta_url(job: _Job, delta: DeltaSpec) -> str:
    """The newest URL for this delta: a desired patch may renew the SAS while it downloads."""
    latest = job.desired.delta
    if latest is not None and latest.content_sha256 == delta.content_sha256:
        return latest.download_url.get_secret_value()
    return delta.download_url.get_secret_value()


class LoaderService:
    """Owns the desired state, the running update and the persisted state; talks through `Reporter`."""

    def __init__(
        self,
        settings: LoaderSettings,
        edgehub: EdgeHubClient,
        http: httpx.AsyncClient,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings
        self._edgehub = edgehub
        self._clock = clock or SystemClock()
        self.repo = ModelRepository(settings.model_root)
        self._store = StateStore(settings.model_root)
        self._state = LoaderState()
        self.reporter = Reporter(edgehub)
        self._downloader = Downloader(
            http,
            DownloadLimits(
                max_bytes=settings.max_download_bytes,
                min_free_bytes=settings.min_free_bytes,
                attempts=settings.download_attempts,
                backoff_initial=settings.backoff_initial,
                backoff_max=settings.backoff_max,
                backoff_jitter=settings.backoff_jitter,
                max_redirects=settings.max_redirects,
            ),
        )
        self._desired: dict[str, Any] = {}
        self._desired_version: int | None = None
        self._early_patches: list[dict[str, Any]] | None = []
        self._job: _Job | None = None
        self._lock = asyncio.Lock()
        self._stopped = False
        self._refresher: asyncio.Task[None] | None = None
        self._serving = ServingWatch()
        self._twin_read = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self, handlers: Handlers) -> None:
        """Prepare the repository, connect, read the whole twin and reconcile it."""
        await asyncio.to_thread(self.repo.ensure_layout)
        await asyncio.to_thread(clean_staging, self.repo)
        if repaired := await asyncio.to_thread(share_installed, self.repo):
            logger.info("made %d installed paths readable by the inference module", repaired)
        self._state = await asyncio.to_thread(self._store.load)
        await self._edgehub.connect(handlers)
        twin = await self._edgehub.get_twin()
        self._desired = dict(twin.desired)
        self._desired_version = twin.desired_version
        early, self._early_patches = self._early_patches or [], None
        for patch in early:
            self._apply_patch(patch)
        self._twin_read.set()  # inputs queued while disconnected need the desired state to be judged
        await self._reannounce_if_needed()
        await self.reconcile()
        self._refresher = asyncio.create_task(self._refresh_twin_forever(), name="twin-refresh")

    async def stop(self) -> None:
        """Park the running update (a partial download resumes on the next start); shut the client."""
        self._stopped = True
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        async with self._lock:
            await self._cancel_job()
        await self._edgehub.shutdown()

    async def _refresh_twin_forever(self) -> None:
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
            if version is not None and self._desired_version is not None and version <= self._desired_version:
                continue
            logger.info("twin refresh found a newer desired state", extra={"twin_version": version})
            self._desired = dict(twin.desired)
            self._desired_version = version
            await self.reconcile()

    async def on_desired_patch(self, patch: dict[str, Any]) -> None:
        if self._stopped:
            return  # shutting down: the next start reads the whole twin anyway
        if self._early_patches is not None:
            self._early_patches.append(patch)  # arrived before the twin was read: applied after it
            return
        if self._apply_patch(patch):
            await self.reconcile()

    def _apply_patch(self, patch: Mapping[str, Any]) -> bool:
        version = patch.get("$version")
        if (
            isinstance(version, int)
            and self._desired_version is not None
            and version <= self._desired_version
        ):
            return False  # already part of the twin we read
        apply_patch(self._desired, patch)
        if isinstance(version, int):
            self._desired_version = version
        return True

    async def wait_idle(self) -> None:
        """Until no update task runs (tests and shutdown)."""
        job = self._job
        if job is not None and job.task is not None:
            await asyncio.wait([job.task])

    @property
    def state(self) -> LoaderState:
        return self._state

    # --- reconcile ---------------------------------------------------------------------------------
    async def reconcile(self, *, force: bool = False) -> None:
        """Bring the device towards the latest desired state (idempotent)."""
        async with self._lock:
            await self._reconcile(force)

    async def _reconcile(self, force: bool) -> None:
        wanted = self._parsed_desired()
        job = self._job
        if isinstance(wanted, DesiredModel) and job is not None and not force and job.running_for(wanted):
            if url_digest(job.desired) != url_digest(wanted):
                job.new_url.set()
            job.desired = wanted  # the next attempt uses the new URLs (the ZIP's, or the delta's)
            return
        await self._cancel_job()
        installed = await self._installed_for(wanted)
        decision = decide(wanted, self._state, installed, self._clock.now(), force=force)
        action = decision.action
        if decision.forget_rollback or decision.forget_rejection:
            if decision.forget_rollback:
                self._state.rolled_back_target = None
            if decision.forget_rejection:
                self._state.rejected = None  # the desired state changed: the refusal no longer applies
            await self._save()
        match action:
            case Idle():
                await self._report_inventory(state=UpdateState.IDLE)
            case RefuseDesired(invalid=InvalidDesired(fields=fields, message=message)):
                logger.warning("desired properties are invalid", extra={"problems": list(fields)})
                self._state.update = None
                await self._save()
                await self._fail_report(
                    ErrorCode.INVALID_DESIRED,
                    message,
                    file_name=None,
                    version=None,
                    started=self._clock.now(),
                )
            case StayRolledBack():
                await self._report_rolled_back()
            case StayRejected(rejection=rejection):
                await self._report_rejected(rejection)
            case ReportReady():
                assert isinstance(wanted, DesiredModel)
                await self._ready_local(wanted, action)
            case Blocked(record=record):
                assert isinstance(wanted, DesiredModel)
                await self._report_record(record, wanted)
            case WaitUntil(at=at, cycle=cycle, record=record):
                assert isinstance(wanted, DesiredModel)
                await self._report_record(record, wanted)  # still failed, retrying at nextRetryAt
                self._start_job(_Job(target_key(wanted), wanted, self._desired_version, cycle, at))
            case Install(cycle=cycle, after_failure=failure):
                assert isinstance(wanted, DesiredModel)
                if failure is not None:
                    await self._report_record(failure, wanted)
                self._start_job(_Job(target_key(wanted), wanted, self._desired_version, cycle))

    async def _report_rolled_back(self) -> None:
        """The operator rolled back from this desired state: report the version that is current."""
        try:
            current = await asyncio.to_thread(self.repo.current_version)
            manifest = await asyncio.to_thread(self.repo.read_manifest, current) if current else None
        except RepositoryError:
            manifest = None
        await self._report_inventory(
            state=UpdateState.READY,
            update=ModelUpdate(
                state=UpdateState.READY,
                file_name=manifest.file_name if manifest else None,
                version=manifest.version if manifest else None,
                desired_version=self._desired_version,
                source="local",
            ),
        )

    async def _installed_for(self, wanted: Desired) -> Installed:
        """`current` and the desired version's manifest, if one is installed and readable."""
        if not isinstance(wanted, DesiredModel) or not self.repo.is_installed(wanted.version):
            return Installed(current=None, manifests={})
        try:
            manifest = await asyncio.to_thread(self.repo.read_manifest, wanted.version)
        except RepositoryError:
            return Installed(current=None, manifests={})
        current = await asyncio.to_thread(self.repo.current_version)
        return Installed(current=current, manifests={wanted.version: manifest})

    async def _ready_local(self, desired: DesiredModel, action: ReportReady) -> None:
        """These bytes are installed under this version: only make them current and announced."""
        if action.activate:
            await asyncio.to_thread(activate, self.repo, desired.version)
        if action.announce:
            await self._announce(action.manifest)
        now = self._clock.now()
        self._state.update = None
        await self._save()
        await self._report_inventory(
            state=UpdateState.READY,
            latest=action.manifest.file_name,
            update=ModelUpdate(
                state=UpdateState.READY,
                file_name=desired.file_name,
                version=desired.version,
                desired_version=self._desired_version,
                source="local",
                finished_at=now,
            ),
        )

    # --- running an update -------------------------------------------------------------------------
    def _start_job(self, job: _Job) -> None:
        self._job = job
        job.task = asyncio.create_task(self._run_job(job), name=f"update-{job.desired.version}")
        job.task.add_done_callback(_log_unexpected_end)

    async def _cancel_job(self) -> None:
        job, self._job = self._job, None
        if job is None or job.task is None or job.task.done():
            return
        job.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job.task

    async def _run_job(self, job: _Job) -> None:
        with log_context(version=job.desired.version, desired_version=job.desired_version):
            while True:
                if job.wait_until is not None:
                    await self._clock.sleep_until(job.wait_until)
                    job.wait_until = None
                try:
                    await self._apply(job)
                    return
                except Exception as exc:  # whatever it was, the update ends reported, never silent
                    if not isinstance(exc, LoaderError):
                        logger.exception("update failed unexpectedly")
                    failure = classify(exc)
                    if failure.code == ErrorCode.DISK_FULL:
                        # The partial download may be what filled the volume: free it so the state
                        # file and the other modules can still write; the retry starts afresh.
                        await asyncio.to_thread(self._drop_other_parts, set())
                    then = after_failure(failure, self._clock.now(), self._settings.retry_after)
                    next_retry = then.at if isinstance(then, RetryAt) else None
                    if isinstance(then, AwaitNewUrl):
                        job.new_url.clear()
                    await self._record_failure(job, failure.code, failure.message, next_retry=next_retry)
                    if isinstance(then, GiveUp):
                        return
                    if isinstance(then, AwaitNewUrl):
                        await job.new_url.wait()  # a desired patch with a new URL for the same target
                    job.wait_until = next_retry
                job.cycle += 1

    async def _apply(self, job: _Job) -> None:
        desired = job.desired
        started = self._clock.now()
        previous = self._state.update
        self._state.update = UpdateRecord(
            target=job.key,
            version=desired.version,
            file_name=desired.file_name,
            url_digest=url_digest(desired),
            desired_version=job.desired_version,
            status="pending",
            cycle=job.cycle,
            started_at=started,
            delta_failed=previous.delta_failed
            if previous is not None and previous.target == job.key
            else None,
        )
        await self._save()
        logger.info("update started", extra={"url": desired.url_for_logs, "cycle": job.cycle})
        self.reporter.update = ModelUpdate(
            state=UpdateState.DOWNLOADING,
            file_name=desired.file_name,
            version=desired.version,
            desired_version=job.desired_version,
            bytes_total=desired.size,
            source="full",
            started_at=started,
        )
        await self.reporter.publish_update()
        part = self.repo.downloads_dir / f"{job.key}.part"
        # A downloaded delta is kept until the update ends: a crash before the install applies it again
        # without asking the link for it twice.
        delta_part = delta_part_path(self.repo, job.key, desired.delta) if desired.delta else None
        keep = {part.name} | ({delta_part.name} if delta_part else set())
        await asyncio.to_thread(self._drop_other_parts, keep)
        check_signature_checkable(desired, self._settings.trusted_key_bytes)  # before any download
        rebuilt = await self._try_delta(job)
        source: Source = "full" if rebuilt is None else "delta"
        result = rebuilt.result if rebuilt is not None else await self._download(job, part)
        await self.reporter.publish_update(state=UpdateState.VERIFYING)
        try:
            await self._verify(desired, result)
            await self.reporter.publish_update(state=UpdateState.INSTALLING)
            manifest = await self._install_shielded(job, result, source)
        except LoaderError:
            if delta_part is not None:  # a final verdict on these bytes: applying them again cannot help
                await asyncio.to_thread(discard, delta_part)
            raise
        for done in (result.path, delta_part):
            if done is not None:
                await asyncio.to_thread(discard, done)
        await self._apply_retention(job.key)
        self._serving.expect(manifest.version)
        await self._announce(manifest)
        if self._state.announced_version == manifest.version:  # a refusal cancels this wait (and the job)
            await self._serving.wait(self._settings.serve_confirm_timeout)
        finished = self._clock.now()
        self._state.update = None
        await self._save()
        await self._report_inventory(
            state=UpdateState.READY,
            latest=manifest.file_name,
            update=self.reporter.update.model_copy(
                update={
                    "state": UpdateState.READY,
                    "finished_at": finished,
                    "error": None,
                    "next_retry_at": None,
                }
            ),
        )
        await self.reporter.status_event(
            ModelStatusEvent(
                state=UpdateState.READY,
                version=desired.version,
                file_name=desired.file_name,
                error=None,
                duration_seconds=max(0.0, (finished - started).total_seconds()),
                bytes_downloaded=result.fetched,
                source=source,
            )
        )
        logger.info(
            "update installed",
            extra={
                "bytes": result.size,
                "fetched": result.fetched,
                "attempts": result.attempts,
                "source": source,
                "bytes_saved": rebuilt.bytes_saved if rebuilt is not None else 0,
            },
        )

    async def _verify(self, desired: DesiredModel, result: DownloadResult) -> None:
        """Digests, then the signature; the ZIP is deleted when either fails (the same bytes would fail
        again). For a delta `result` is the rebuilt ZIP: the signature covers the target, not the patch."""
        try:
            verify_digests(desired, size=result.size, md5=result.md5, sha256=result.sha256)
            verify_signature(
                desired,
                sha256=result.sha256,
                trusted_keys=self._settings.trusted_key_bytes,
                required=self._settings.require_signature,
            )
        except LoaderError:
            await asyncio.to_thread(discard, result.path)
            raise

    async def _try_delta(self, job: _Job) -> RebuiltZip | None:
        """The target ZIP rebuilt from the desired `Delta`, or None: then the full ZIP is downloaded.

        Every failure here (no usable base, unsupported format, the delta download failing for good, a
        bad, truncated or tampered patch, a digest mismatch) only costs the saving, never the update.
        """
        desired, delta = job.desired, job.desired.delta
        if delta is None:
            return None
        record = self._state.update
        if record is not None and record.delta_failed == delta.content_sha256:
            logger.info("delta not used: it failed before for this target", extra={"source": "full"})
            return None
        delta_part = delta_part_path(self.repo, job.key, delta)
        out_zip = rebuilt_zip_path(self.repo, job.key)
        try:
            base = await asyncio.to_thread(usable_base, self.repo, delta)
            await self.reporter.publish_update(source="delta", bytes_total=None, bytes_done=0, percent=None)
            logger.info(
                "downloading a delta",
                extra={
                    "base_version": delta.base_version,
                    "url": redact_url(delta.download_url.get_secret_value()),
                },
            )
            fetched = await self._fetch(lambda: _delta_url(job, delta), delta_part, None)
            rebuilt = await asyncio.to_thread(
                rebuild_zip,
                self.repo,
                desired,
                base,
                fetched,
                out_zip,
                max_output_bytes=self._settings.max_download_bytes,
            )
        except (DeltaUnusableError, LoaderError) as exc:
            await self._delta_failed(job, delta.content_sha256, str(exc), [delta_part, out_zip])
            return None
        logger.info(
            "delta applied",
            extra={
                "base_version": delta.base_version,
                "delta_bytes": rebuilt.applied.delta_size,
                "bytes_saved": rebuilt.bytes_saved,
                "kinds": rebuilt.applied.kinds,
                "deflate_seconds": round(rebuilt.applied.deflate_seconds, 3),
            },
        )
        return rebuilt

    async def _delta_failed(self, job: _Job, delta_sha256: str, reason: str, leftovers: list[Path]) -> None:
        """Log and remember why the delta was not used, then report the switch to the full download."""
        logger.warning(
            "delta not used; downloading the full ZIP", extra={"reason": redact(reason), "source": "full"}
        )
        for path in leftovers:
            await asyncio.to_thread(discard, path)
        if self._state.update is not None:
            self._state.update = self._state.update.model_copy(update={"delta_failed": delta_sha256})
            await self._save()
        await self.reporter.publish_update(
            source="full", bytes_done=0, bytes_total=job.desired.size, percent=None, attempt=0
        )

    async def _download(self, job: _Job, part: Path) -> DownloadResult:
        return await self._fetch(lambda: job.desired.download_url.get_secret_value(), part, job.desired.size)

    async def _fetch(self, url: Callable[[], str], part: Path, expected_size: int | None) -> DownloadResult:
        """One resumable, hashed download with progress reports (the ZIP or a delta)."""

        async def publish() -> None:
            await self.reporter.publish_update()

        throttle = ProgressThrottle(self._clock, self._settings.progress_interval, publish)

        async def on_progress(done: int, total: int | None, attempt: int) -> None:
            changed_attempt = attempt != self.reporter.update.attempt
            self.reporter.update = self.reporter.update.model_copy(
                update={
                    "bytes_done": done,
                    "bytes_total": total if total is not None else expected_size,
                    "percent": round(100.0 * done / total, 1) if total else None,
                    "attempt": attempt,
                }
            )
            if changed_attempt:
                await throttle.force()
            else:
                await throttle.tick()

        return await self._downloader.fetch(url, part, expected_size=expected_size, on_progress=on_progress)

    async def _install_shielded(self, job: _Job, result: DownloadResult, source: Source) -> ModelManifest:
        """Unpack, install and switch `current` in one thread step that cancellation waits for."""
        settings = self._settings
        desired = job.desired
        installed_at = self._clock.now()

        def work() -> ModelManifest:
            try:
                unpacked = unpack_model(
                    result.path,
                    self.repo.staging_dir,
                    UnpackLimits(
                        max_members=settings.max_archive_members,
                        max_unpacked_bytes=settings.max_unpacked_bytes,
                        min_free_bytes=settings.min_free_bytes,
                    ),
                )
            except LoaderError:
                discard(result.path)
                raise
            try:
                manifest = install_version(
                    self.repo,
                    unpacked,
                    version=desired.version,
                    file_name=desired.file_name,
                    source_sha256=result.sha256.hex(),
                    source_md5=result.md5.hex(),
                    installed_at=installed_at,
                    source=source,
                )
            finally:
                remove_tree(unpacked.directory)  # gone already after the rename; left over on failure
            activate(self.repo, desired.version)
            return manifest

        future = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])  # finish the step; the next start sees a complete install
            raise

    async def _apply_retention(self, installed: str) -> None:
        """After the install, on the event loop: a desired patch that arrived during the install (and
        cancelled this job) may name a delta whose base must survive; if cancelled, the next install
        applies retention."""
        protect = self._pending_delta_base(installed) | protected_versions(self._state.served_versions)
        removed = await asyncio.to_thread(apply_retention, self.repo, self._settings.keep_versions, protect)
        if removed:
            logger.info("old versions removed", extra={"removed": removed, "kept_for_delta": sorted(protect)})

    def _drop_other_parts(self, keep: set[str]) -> None:
        """Partial downloads (ZIP or delta) of other targets, and rebuilt ZIPs an interruption left,
        only take space: a newer target replaced them, or the delta is applied again."""
        for pattern in ("*.part", "*.zip"):
            for entry in self.repo.downloads_dir.glob(pattern):
                if entry.name not in keep:
                    discard(entry)

    def _parsed_desired(self) -> Desired:
        props = {key: value for key, value in self._desired.items() if not key.startswith("$")}
        if desired_is_empty(props):
            return NoDesired()
        try:
            return parse_desired(props, allow_insecure_http=self._settings.allow_insecure_http)
        except InvalidDesiredError as exc:
            return InvalidDesired(tuple(exc.fields), str(exc))

    def _latest_desired(self) -> DesiredModel | None:
        wanted = self._parsed_desired()
        return wanted if isinstance(wanted, DesiredModel) else None

    def _pending_delta_base(self, installing: str) -> frozenset[str]:
        """The base version of the latest desired `Delta`, if that desired target is not the one being
        installed: retention must keep it or the delta could not be applied."""
        desired = self._latest_desired()
        if desired is None or desired.delta is None or target_key(desired) == installing:
            return frozenset()
        return frozenset({desired.delta.base_version})

    # --- failures and reports ----------------------------------------------------------------------
    async def _record_failure(
        self, job: _Job, code: ErrorCode, message: str, *, next_retry: datetime | None
    ) -> None:
        message = reportable(message)
        logger.warning(
            "update failed", extra={"code": str(code), "reason": message, "next_retry_at": next_retry}
        )
        record = self._state.update or UpdateRecord(
            target=job.key,
            version=job.desired.version,
            file_name=job.desired.file_name,
            url_digest=url_digest(job.desired),
        )
        record = record.model_copy(
            update={
                "status": "failed",
                "error_code": str(code),
                "error_message": message,
                "cycle": job.cycle,
                "next_retry_at": next_retry,
                "url_digest": url_digest(job.desired),
            }
        )
        self._state.update = record
        try:
            await self._save()
        except Exception:
            # Reporting the failure matters more than persisting it; the retry is still scheduled.
            logger.exception("could not save the loader state")
        await self._fail_report(
            code,
            message,
            file_name=job.desired.file_name,
            version=job.desired.version,
            started=record.started_at or self._clock.now(),
            next_retry=next_retry,
            bytes_downloaded=self.reporter.update.bytes_done,
            source=self.reporter.update.source or "full",
        )

    async def _fail_report(
        self,
        code: ErrorCode,
        message: str,
        *,
        file_name: str | None,
        version: str | None,
        started: datetime,
        next_retry: datetime | None = None,
        bytes_downloaded: int = 0,
        source: Source = "full",
    ) -> None:
        finished = self._clock.now()
        error = UpdateError(code=str(code), message=reportable(message))
        reported_source: Source | None = None if code == ErrorCode.INVALID_DESIRED else source
        await self.reporter.publish_update(
            state=UpdateState.FAILED,
            file_name=file_name,
            version=version,
            desired_version=self._desired_version,
            error=error,
            next_retry_at=next_retry,
            finished_at=finished,
            source=reported_source,
            started_at=started,
        )
        await self.reporter.status_event(
            ModelStatusEvent(
                state=UpdateState.FAILED,
                version=version,
                file_name=file_name,
                error=error,
                duration_seconds=max(0.0, (finished - started).total_seconds()),
                bytes_downloaded=bytes_downloaded,
                source=reported_source,
            )
        )

    async def _report_record(self, record: UpdateRecord, desired: DesiredModel) -> None:
        """Re-report a persisted failure (after a restart) without acting on it."""
        await self.reporter.publish_update(
            state=UpdateState.FAILED,
            file_name=desired.file_name,
            version=desired.version,
            desired_version=self._desired_version,
            error=UpdateError(
                code=record.error_code or str(ErrorCode.INTERNAL), message=record.error_message or ""
            ),
            next_retry_at=record.next_retry_at,
            attempt=0,
        )

    async def _report_inventory(
        self, *, state: UpdateState, latest: str | None = None, update: ModelUpdate | None = None
    ) -> None:
        installed = await asyncio.to_thread(self.repo.installed_versions)
        if update is None:
            update = self.reporter.update.model_copy(update={"state": state})
            if state is UpdateState.IDLE:
                update = ModelUpdate(desired_version=self._desired_version)
        self.reporter.update = update
        patch: dict[str, Any] = {"ModelUpdate": update.to_twin(), "InstalledModels": installed}
        if latest is not None:
            patch["LatestAIModelFileName"] = latest
        await self.reporter.patch(patch)

    async def _announce(self, manifest: ModelManifest) -> None:
        if await self.reporter.announce(manifest):
            self._state.announced_version = manifest.version
            await self._save()

    async def _reannounce_if_needed(self) -> None:
        """The last announcement may have been lost (crash between install and send): send it again."""
        try:
            current = await asyncio.to_thread(self.repo.current_version)
            if current is None or current == self._state.announced_version:
                return
            manifest = await asyncio.to_thread(self.repo.read_manifest, current)
        except RepositoryError:
            logger.warning("the current version is unreadable; not announced")
            return
        await self._announce(manifest)
        await self.reporter.patch({"LatestAIModelFileName": manifest.file_name})

    async def _save(self) -> None:
        await asyncio.to_thread(self._store.save, self._state)

    # --- what the inference module says (routed `InferenceStatus`) ---------------------------------
    async def on_input(self, message: InputMessage) -> None:
        if message.input_name != INPUT_INFERENCE_STATUS:
            logger.warning("message on an unknown input ignored", extra={"input_name": message.input_name})
            return
        try:
            status = InferenceStatus.model_validate_json(message.data)
        except ValueError:
            logger.warning("an InferenceStatus message that does not parse was ignored")
            return
        await self._twin_read.wait()
        async with self._lock:
            if status.state == "serving":
                self._serving.heard_serving(status.version)
                served = remember_served(self._state.served_versions, status.version)
                if served != self._state.served_versions:
                    self._state.served_versions = served
                    await self._save()
                return
            await self._inference_refused(status)

    async def _inference_refused(self, status: InferenceStatus) -> None:
        """Put `current` back on what serves, remember the refusal, report it as `rejected`."""
        desired = self._latest_desired()
        current = await asyncio.to_thread(self.repo.current_version)
        installed = await asyncio.to_thread(self.repo.installed_versions)
        plan = plan_rejection(
            status,
            current=current,
            desired_version=desired.version if desired is not None else None,
            desired_target=target_key(desired) if desired is not None else None,
            served=self._state.served_versions,
            installed=installed,
        )
        code, message = status.code or str(ErrorCode.LOAD_FAILED), reportable(status.message or "")
        logger.warning(
            "the inference module refused a version",
            extra={"refused_version": status.version, "code": code, "restore": plan.restore},
        )
        if not plan.relevant:
            return
        if plan.block_target is not None and self._job is not None and self._job.key == plan.block_target:
            await self._cancel_job()
        latest: str | None = None
        if plan.restore is not None:
            restored = await asyncio.to_thread(self.repo.read_manifest, plan.restore)
            await asyncio.to_thread(activate, self.repo, plan.restore)
            await self._announce(restored)
            latest = restored.file_name
        file_name: str | None = None
        if self.repo.is_installed(status.version):
            with contextlib.suppress(RepositoryError):
                file_name = (await asyncio.to_thread(self.repo.read_manifest, status.version)).file_name
        rejection = Rejection(
            target=plan.block_target, version=status.version, file_name=file_name, code=code, message=message
        )
        self._state.rejected = rejection
        self._state.update = None
        await self._save()
        await self._report_rejected(rejection, latest=latest)
        await self.reporter.status_event(
            ModelStatusEvent(
                state=UpdateState.REJECTED,
                version=status.version,
                file_name=file_name,
                error=UpdateError(code=code, message=message),
                duration_seconds=0.0,
                bytes_downloaded=0,
                source="local",
            )
        )

    async def _report_rejected(self, rejection: Rejection, *, latest: str | None = None) -> None:
        await self._report_inventory(
            state=UpdateState.REJECTED,
            latest=latest,
            update=ModelUpdate(
                state=UpdateState.REJECTED,
                file_name=rejection.file_name,
                version=rejection.version,
                desired_version=self._desired_version,
                error=UpdateError(code=rejection.code, message=rejection.message),
                source="local",
                finished_at=self._clock.now(),
            ),
        )

    # --- operator actions (direct methods) ---------------------------------------------------------
    async def rollback(self, version: str | None) -> ModelManifest:
        """Make `version` (or the one installed before the current) current and announce it."""
        async with self._lock:
            current = await asyncio.to_thread(self.repo.current_version)
            installed = await asyncio.to_thread(self.repo.installed_versions)
            version = rollback_version(version, current, installed)
            await self._cancel_job()
            manifest = await asyncio.to_thread(self.repo.read_manifest, version)
            await asyncio.to_thread(activate, self.repo, version)
            latest = self._latest_desired()
            self._state.rolled_back_target = target_key(latest) if latest is not None else None
            self._state.update = None
            await self._save()
            await self._announce(manifest)
            await self._report_inventory(
                state=UpdateState.READY,
                latest=manifest.file_name,
                update=ModelUpdate(
                    state=UpdateState.READY,
                    file_name=manifest.file_name,
                    version=version,
                    desired_version=self._desired_version,
                    source="local",
                    finished_at=self._clock.now(),
                ),
            )
            logger.info("rolled back", extra={"to_version": version, "from_version": current})
            return manifest

    async def retry(self) -> None:
        """Forget a recorded failure or rollback and apply the current desired state again, now."""
        async with self._lock:
            self._state.update = None
            self._state.rolled_back_target = None
            self._state.rejected = None
            await self._save()
            await self._reconcile(force=True)

    async def status(self) -> dict[str, Any]:
        installed = await asyncio.to_thread(self.repo.installed_versions)
        try:
            current = await asyncio.to_thread(self.repo.current_version)
        except RepositoryError:
            current = None
        return {
            "ModelUpdate": self.reporter.update.to_twin(),
            "InstalledModels": installed,
            "CurrentVersion": current,
        }
