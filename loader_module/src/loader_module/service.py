"""The loader's coordinator: it wires the desired-state tracker (`tracker`), the policy (`decide`), the
update runner (`runner`) and the reporter (`reporting`), and serves the operator's methods and the
inference module's `InferenceStatus`. One lock serialises reconciling, operator actions and refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from edge_shared.desired import DesiredModel
from edge_shared.edgehub import EdgeHubClient, Handlers, InputMessage
from edge_shared.messages import INPUT_INFERENCE_STATUS, InferenceStatus
from edge_shared.reported import ErrorCode
from edge_shared.repository import ModelManifest, ModelRepository
from loader_module.clock import Clock, SystemClock
from loader_module.decide import (
    Action,
    Blocked,
    Desired,
    Idle,
    Install,
    RefuseDesired,
    ReportReady,
    StayRejected,
    StayRolledBack,
    WaitUntil,
    decide,
    rollback_version,
)
from loader_module.failures import reportable
from loader_module.install import activate, clean_staging, share_installed
from loader_module.outcomes import Outcomes
from loader_module.rejection import Rejection, plan_rejection, remember_served
from loader_module.reporting import Reporter
from loader_module.runner import UpdateJob, UpdateRunner
from loader_module.settings import LoaderSettings
from loader_module.state import LoaderState, StateKeeper, StateStore, target_key
from loader_module.tracker import DesiredTracker

logger = logging.getLogger(__name__)


class LoaderService:
    """Owns the lifecycle, the lock and the persisted state; the parts do the work."""

    def __init__(
        self,
        settings: LoaderSettings,
        edgehub: EdgeHubClient,
        http: httpx.AsyncClient,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._edgehub = edgehub
        self._clock = clock or SystemClock()
        self.repo = ModelRepository(settings.model_root)
        self._store = StateStore(settings.model_root)
        self._keeper = StateKeeper(self._store)
        self._tracker = DesiredTracker(edgehub, self._clock, allow_insecure_http=settings.allow_insecure_http)
        self.reporter = Reporter(edgehub, self._clock, settings.progress_interval)
        self._outcomes = Outcomes(
            self.reporter, self.repo, self._keeper, self._tracker, self._clock, settings.serve_confirm_timeout
        )
        self._runner = UpdateRunner(settings, self.repo, self._keeper, http, self._clock, self._outcomes)
        self._lock = asyncio.Lock()
        self._stopped = False
        self._refresher: asyncio.Task[None] | None = None

    @property
    def state(self) -> LoaderState:
        return self._keeper.state

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self, handlers: Handlers) -> None:
        """Prepare the repository, connect, read the whole twin and reconcile it."""
        await asyncio.to_thread(self.repo.ensure_layout)
        await asyncio.to_thread(clean_staging, self.repo)
        if repaired := await asyncio.to_thread(share_installed, self.repo):
            logger.info("made %d installed paths readable by the inference module", repaired)
        await self._keeper.load()
        await self._edgehub.connect(handlers)
        self._tracker.read_twin(await self._edgehub.get_twin())
        await self._outcomes.reannounce_if_needed()
        await self.reconcile()
        self._refresher = asyncio.create_task(
            self._tracker.refresh_forever(self.reconcile), name="twin-refresh"
        )

    async def stop(self) -> None:
        """Park the running update (a partial download resumes on the next start); shut the client."""
        self._stopped = True
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        async with self._lock:
            await self._runner.cancel()
        await self._edgehub.shutdown()

    async def on_desired_patch(self, patch: dict[str, Any]) -> None:
        if self._stopped:
            return  # shutting down: the next start reads the whole twin anyway
        if self._tracker.merge(patch):
            await self.reconcile()

    async def wait_idle(self) -> None:
        """Until no update task runs (tests and shutdown)."""
        await self._runner.wait_idle()

    # --- reconcile ---------------------------------------------------------------------------------
    async def reconcile(self, *, force: bool = False) -> None:
        """Bring the device towards the latest desired state (idempotent)."""
        async with self._lock:
            await self._reconcile(force)

    async def _reconcile(self, force: bool) -> None:
        wanted = self._tracker.latest()
        job = self._runner.job
        if isinstance(wanted, DesiredModel) and not force and job is not None and job.running_for(wanted):
            job.follow(wanted)
            return
        await self._runner.cancel()
        decision = decide(
            wanted, self.state, await self._outcomes.installed(wanted), self._clock.now(), force=force
        )
        if decision.forget_rollback:
            self.state.rolled_back_target = None
        if decision.forget_rejection:
            self.state.rejected = None  # the desired state changed: the refusal no longer applies
        if decision.forget_rollback or decision.forget_rejection:
            await self._keeper.save()
        await self._carry_out(decision.action, wanted)

    async def _carry_out(self, action: Action, wanted: Desired) -> None:
        outcomes = self._outcomes
        if isinstance(action, Idle):
            await outcomes.idle()
        elif isinstance(action, RefuseDesired):
            logger.warning("desired properties are invalid", extra={"problems": list(action.invalid.fields)})
            self.state.update = None
            await self._keeper.save()
            await outcomes.invalid_desired(action.invalid.message)
        elif isinstance(action, StayRolledBack):
            await outcomes.local(await outcomes.current_manifest())
        elif isinstance(action, StayRejected):
            await outcomes.rejected(action.rejection)
        elif isinstance(wanted, DesiredModel):  # every other action is about a valid desired model
            if isinstance(action, ReportReady):
                if action.activate:
                    await asyncio.to_thread(activate, self.repo, wanted.version)
                    logger.info("switched to an installed version", extra={"version": wanted.version})
                if action.announce:
                    await outcomes.announce_once(action.manifest)
                self.state.update = None
                await self._keeper.save()
                await outcomes.local(action.manifest, file_name=wanted.file_name, finished=self._clock.now())
                return
            failure = action.after_failure if isinstance(action, Install) else action.record
            if failure is not None:
                await outcomes.failed_before(failure, wanted)
            if not isinstance(action, Blocked):
                wait = action.at if isinstance(action, WaitUntil) else None
                self._runner.start(UpdateJob(wanted, self._tracker.version, action.cycle, wait))

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
        await self._tracker.twin_read()  # a refused desired target can only be judged against it
        async with self._lock:
            if status.state == "serving":
                self._outcomes.serving.heard_serving(status.version)
                served = remember_served(self.state.served_versions, status.version)
                if served != self.state.served_versions:
                    self.state.served_versions = served
                    await self._keeper.save()
                return
            await self._inference_refused(status)

    async def _inference_refused(self, status: InferenceStatus) -> None:
        """Put `current` back on what serves, remember the refusal, report it as `rejected`."""
        desired = self._tracker.latest_model()
        plan = plan_rejection(
            status,
            current=await asyncio.to_thread(self.repo.current_version),
            desired_version=desired.version if desired is not None else None,
            desired_target=target_key(desired) if desired is not None else None,
            served=self.state.served_versions,
            installed=await asyncio.to_thread(self.repo.installed_versions),
        )
        code, message = status.code or str(ErrorCode.LOAD_FAILED), reportable(status.message or "")
        logger.warning(
            "the inference module refused a version",
            extra={"refused_version": status.version, "code": code, "restore": plan.restore},
        )
        if not plan.relevant:
            return
        job = self._runner.job
        if plan.block_target is not None and job is not None and job.key == plan.block_target:
            await self._runner.cancel()
        restored = await self._outcomes.make_current(plan.restore) if plan.restore is not None else None
        rejection = Rejection(
            target=plan.block_target,
            version=status.version,
            file_name=await self._outcomes.file_name_of(status.version),
            code=code,
            message=message,
        )
        self.state.rejected, self.state.update = rejection, None
        await self._keeper.save()
        await self._outcomes.rejected(rejection, latest=restored.file_name if restored is not None else None)
        await self._outcomes.rejected_event(rejection)

    # --- operator actions (direct methods) ---------------------------------------------------------
    async def rollback(self, version: str | None) -> ModelManifest:
        """Make `version` (or the one installed before the current) current and announce it."""
        async with self._lock:
            current = await asyncio.to_thread(self.repo.current_version)
            installed = await asyncio.to_thread(self.repo.installed_versions)
            version = rollback_version(version, current, installed)
            await self._runner.cancel()
            manifest = await asyncio.to_thread(self.repo.read_manifest, version)
            await asyncio.to_thread(activate, self.repo, version)
            latest = self._tracker.latest_model()
            self.state.rolled_back_target = target_key(latest) if latest is not None else None
            self.state.update = None
            await self._keeper.save()
            await self._outcomes.announce_once(manifest)
            await self._outcomes.local(manifest, finished=self._clock.now())
            logger.info("rolled back", extra={"to_version": version, "from_version": current})
            return manifest

    async def retry(self) -> None:
        """Forget a recorded failure, rollback or refusal and apply the current desired state again, now."""
        async with self._lock:
            self.state.update, self.state.rolled_back_target, self.state.rejected = None, None, None
            await self._keeper.save()
            await self._reconcile(force=True)

    async def status(self) -> dict[str, Any]:
        """`getStatus`: the last `ModelUpdate`, the installed versions and the current one."""
        return await self._outcomes.status()
