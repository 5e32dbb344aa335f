"""The update runner: one desired target through delta → download → verify → install → retention →
announce, cycle after cycle until it is installed or fails for good. It persists its `UpdateRecord` and
tells everything else through `UpdateEvents`, which the coordinator implements (and tests fake).

An update runs as one task (`UpdateJob`); a newer target cancels it (the partial download stays for a
later resume only if it is the same target). The install step is shielded from cancellation so that
shutdown finishes it rather than leaving it half done, although every step is a rename and would be safe
to cut anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import httpx

from edge_shared.desired import DeltaSpec, DesiredModel
from edge_shared.logs import log_context
from edge_shared.redaction import redact, redact_url
from edge_shared.reported import ErrorCode, ModelUpdate, Source, UpdateState
from edge_shared.repository import ModelManifest, ModelRepository
from loader_module.clock import Clock
from loader_module.decide import AwaitNewUrl, GiveUp, RetryAt, after_failure, delta_to_try
from loader_module.delta import RebuiltZip, delta_part_path, rebuild_zip, rebuilt_zip_path, usable_base
from loader_module.download import Downloader, DownloadLimits, DownloadResult, discard
from loader_module.errors import DeltaUnusableError, LoaderError
from loader_module.failures import Failure, classify, reportable
from loader_module.install import activate, install_version, prune_versions
from loader_module.settings import LoaderSettings
from loader_module.state import StateKeeper, UpdateRecord, target_key, url_digest
from loader_module.unpack import UnpackLimits, remove_tree, unpack_model
from loader_module.verify import check_signature_checkable, verify_digests, verify_signature

logger = logging.getLogger(__name__)


@dataclass
class UpdateJob:
    """One desired target being installed; `desired` follows URL changes for the same target."""

    desired: DesiredModel
    desired_version: int | None
    cycle: int
    wait_until: datetime | None = None
    new_url: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def key(self) -> str:
        return target_key(self.desired)

    def running_for(self, desired: DesiredModel) -> bool:
        return self.key == target_key(desired) and self.task is not None and not self.task.done()

    def follow(self, desired: DesiredModel) -> None:
        """The next attempt uses the newest URLs (the ZIP's, or the delta's) of the same target."""
        if url_digest(self.desired) != url_digest(desired):
            self.new_url.set()
        self.desired = desired


class UpdateEvents(Protocol):
    """What the runner tells while it works; the coordinator reports it and answers two questions."""

    async def begun(self, update: ModelUpdate) -> None:
        """A cycle began: report this `downloading` update."""
        ...

    async def stage(self, state: UpdateState) -> None:
        """The bytes are in: `verifying`, then `installing`."""
        ...

    async def restarted(self, source: Source, bytes_total: int | None) -> None:
        """The bytes start again from zero, from `source` (a delta, or the full ZIP after it failed)."""
        ...

    async def progress(
        self, bytes_done: int, bytes_total: int | None, percent: float | None, attempt: int
    ) -> None:
        """Bytes flow (the receiver throttles; a new attempt is always worth a report)."""
        ...

    def retained(self, installing: str) -> frozenset[str]:
        """Versions retention must keep besides the newest ones, while `installing` is installed."""
        ...

    async def announce(self, manifest: ModelManifest) -> None:
        """Installed and current: announce it and give the inference module time to say it serves."""
        ...

    async def ready(
        self, job: UpdateJob, manifest: ModelManifest, *, started: datetime, fetched: int, source: Source
    ) -> None:
        """The update ended installed (its record is already cleared)."""
        ...

    async def failed(
        self, job: UpdateJob, failure: Failure, *, started: datetime, next_retry: datetime | None
    ) -> None:
        """A cycle failed (its record is already saved)."""
        ...


def _log_unexpected_end(task: asyncio.Task[None]) -> None:
    """An update task ends by returning or being cancelled; anything else is a bug worth a log line."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("update task ended with an unexpected error", exc_info=exc)


class UpdateRunner:
    """Runs jobs one at a time (the coordinator cancels the running one before starting another)."""

    def __init__(
        self,
        settings: LoaderSettings,
        repo: ModelRepository,
        keeper: StateKeeper,
        http: httpx.AsyncClient,
        clock: Clock,
        events: UpdateEvents,
    ) -> None:
        self._settings = settings
        self._repo = repo
        self._keeper = keeper
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
        self._clock = clock
        self._events = events
        self._job: UpdateJob | None = None

    # --- the running job ---------------------------------------------------------------------------
    @property
    def job(self) -> UpdateJob | None:
        return self._job

    def start(self, job: UpdateJob) -> None:
        self._job = job
        job.task = asyncio.create_task(self._run(job), name=f"update-{job.desired.version}")
        job.task.add_done_callback(_log_unexpected_end)

    async def cancel(self) -> None:
        job, self._job = self._job, None
        if job is None or job.task is None or job.task.done():
            return
        job.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job.task

    async def wait_idle(self) -> None:
        """Until no update task runs (tests and shutdown)."""
        job = self._job
        if job is not None and job.task is not None:
            await asyncio.wait([job.task])

    async def _run(self, job: UpdateJob) -> None:
        with log_context(version=job.desired.version, desired_version=job.desired_version):
            while True:
                if job.wait_until is not None:
                    await self._clock.sleep_until(job.wait_until)
                    job.wait_until = None
                try:
                    await self._cycle(job)
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
                    if isinstance(then, AwaitNewUrl):
                        job.new_url.clear()
                    job.wait_until = then.at if isinstance(then, RetryAt) else None
                    await self._record_failure(job, failure, next_retry=job.wait_until)
                    if isinstance(then, GiveUp):
                        return
                    if isinstance(then, AwaitNewUrl):
                        await job.new_url.wait()  # a desired patch with a new URL for the same target
                job.cycle += 1

    async def _record_failure(self, job: UpdateJob, failure: Failure, *, next_retry: datetime | None) -> None:
        message = reportable(failure.message)
        logger.warning(
            "update failed", extra={"code": str(failure.code), "reason": message, "next_retry_at": next_retry}
        )
        state = self._keeper.state
        record = state.update or UpdateRecord(
            target=job.key,
            version=job.desired.version,
            file_name=job.desired.file_name,
            url_digest=url_digest(job.desired),
        )
        record.status = "failed"
        record.error_code = str(failure.code)
        record.error_message = message
        record.cycle = job.cycle
        record.next_retry_at = next_retry
        record.url_digest = url_digest(job.desired)
        state.update = record
        try:
            await self._keeper.save()
        except Exception:
            # Reporting the failure matters more than persisting it; the retry is still scheduled.
            logger.exception("could not save the loader state")
        await self._events.failed(
            job,
            Failure(failure.code, message, failure.retry_later),
            started=record.started_at or self._clock.now(),
            next_retry=next_retry,
        )

    # --- one cycle ---------------------------------------------------------------------------------
    async def _cycle(self, job: UpdateJob) -> None:
        desired = job.desired
        started = self._clock.now()
        previous = self._keeper.state.update
        self._keeper.state.update = UpdateRecord(
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
        await self._keeper.save()
        logger.info("update started", extra={"url": desired.url_for_logs, "cycle": job.cycle})
        await self._events.begun(
            ModelUpdate(
                state=UpdateState.DOWNLOADING,
                file_name=desired.file_name,
                version=desired.version,
                desired_version=job.desired_version,
                bytes_total=desired.size,
                source="full",
                started_at=started,
            )
        )
        part = self._repo.downloads_dir / f"{job.key}.part"
        # A downloaded delta is kept until the update ends: a crash before the install applies it again
        # without asking the link for it twice.
        delta_part = delta_part_path(self._repo, job.key, desired.delta) if desired.delta else None
        keep = {part.name} | ({delta_part.name} if delta_part else set())
        await asyncio.to_thread(self._drop_other_parts, keep)
        check_signature_checkable(desired, self._settings.trusted_key_bytes)  # before any download
        rebuilt = await self._try_delta(job)
        source: Source = "full" if rebuilt is None else "delta"
        result = rebuilt.result if rebuilt is not None else await self._download(job, part)
        await self._events.stage(UpdateState.VERIFYING)
        try:
            await self._verify(desired, result)
            await self._events.stage(UpdateState.INSTALLING)
            manifest = await self._install_shielded(job, result, source)
        except LoaderError:
            if delta_part is not None:  # a final verdict on these bytes: applying them again cannot help
                await asyncio.to_thread(discard, delta_part)
            raise
        for done in (result.path, delta_part):
            if done is not None:
                await asyncio.to_thread(discard, done)
        await self._prune(job.key)
        await self._events.announce(manifest)
        self._keeper.state.update = None
        await self._keeper.save()
        await self._events.ready(job, manifest, started=started, fetched=result.fetched, source=source)
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

    # --- the delta ---------------------------------------------------------------------------------
    async def _try_delta(self, job: UpdateJob) -> RebuiltZip | None:
        """The target ZIP rebuilt from the desired `Delta`, or None: then the full ZIP is downloaded.

        Every failure here (no usable base, unsupported format, the delta download failing for good, a
        bad, truncated or tampered patch, a digest mismatch) only costs the saving, never the update.
        """
        desired = job.desired
        delta = delta_to_try(desired, self._keeper.state.update)
        if delta is None:
            if desired.delta is not None:
                logger.info("delta not used: it failed before for this target", extra={"source": "full"})
            return None
        delta_part = delta_part_path(self._repo, job.key, delta)
        out_zip = rebuilt_zip_path(self._repo, job.key)
        try:
            base = await asyncio.to_thread(usable_base, self._repo, delta)
            await self._events.restarted("delta", None)
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
                self._repo,
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

    async def _delta_failed(
        self, job: UpdateJob, delta_sha256: str, reason: str, leftovers: list[Path]
    ) -> None:
        """Log and remember why the delta was not used, then report the switch to the full download."""
        logger.warning(
            "delta not used; downloading the full ZIP", extra={"reason": redact(reason), "source": "full"}
        )
        for path in leftovers:
            await asyncio.to_thread(discard, path)
        if (record := self._keeper.state.update) is not None:
            record.delta_failed = delta_sha256
            await self._keeper.save()
        await self._events.restarted("full", job.desired.size)

    # --- downloads ---------------------------------------------------------------------------------
    async def _download(self, job: UpdateJob, part: Path) -> DownloadResult:
        return await self._fetch(lambda: job.desired.download_url.get_secret_value(), part, job.desired.size)

    async def _fetch(self, url: Callable[[], str], part: Path, expected_size: int | None) -> DownloadResult:
        """One resumable, hashed download with progress reports (the ZIP or a delta)."""

        async def on_progress(done: int, total: int | None, attempt: int) -> None:
            percent = round(100.0 * done / total, 1) if total else None
            await self._events.progress(done, total if total is not None else expected_size, percent, attempt)

        return await self._downloader.fetch(url, part, expected_size=expected_size, on_progress=on_progress)

    def _drop_other_parts(self, keep: set[str]) -> None:
        """Partial downloads (ZIP or delta) of other targets, and rebuilt ZIPs an interruption left,
        only take space: a newer target replaced them, or the delta is applied again."""
        for pattern in ("*.part", "*.zip"):
            for entry in self._repo.downloads_dir.glob(pattern):
                if entry.name not in keep:
                    discard(entry)

    # --- install -----------------------------------------------------------------------------------
    async def _install_shielded(
        self, job: UpdateJob, result: DownloadResult, source: Source
    ) -> ModelManifest:
        """Unpack, install and switch `current` in one thread step that cancellation waits for."""
        settings, repo, desired = self._settings, self._repo, job.desired
        installed_at = self._clock.now()

        def work() -> ModelManifest:
            try:
                unpacked = unpack_model(
                    result.path,
                    repo.staging_dir,
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
                    repo,
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
            activate(repo, desired.version)
            return manifest

        future = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])  # finish the step; the next start sees a complete install
            raise

    async def _prune(self, installed: str) -> None:
        """Retention, after the install and on the event loop: a desired patch that arrived during the
        install (and cancelled this job) may name a delta whose base must survive; if cancelled, the
        next install prunes."""
        protect = self._events.retained(installed)
        removed = await asyncio.to_thread(prune_versions, self._repo, self._settings.keep_versions, protect)
        if removed:
            logger.info("old versions removed", extra={"removed": removed, "kept_for_delta": sorted(protect)})


def _delta_url(job: UpdateJob, delta: DeltaSpec) -> str:
    """The newest URL for this delta: a desired patch may renew the SAS while it downloads."""
    latest = job.desired.delta
    if latest is not None and latest.content_sha256 == delta.content_sha256:
        return latest.download_url.get_secret_value()
    return delta.download_url.get_secret_value()
