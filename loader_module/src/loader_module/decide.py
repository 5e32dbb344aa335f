"""The loader's policy as plain functions: what to do with this desired state, this persisted record,
what is installed and the time. No I/O, no asyncio: the coordinator (`service`) gathers the inputs,
calls `decide`, and carries the returned action out; the update runner asks `delta_to_try` and
`after_failure` the same way.

The action table (first match wins; `force` is the operator's `retry`, which also forgets every mark):

    desired names no model                         Idle            cancel; report idle
    desired does not validate                      RefuseDesired   cancel; forget the record; report invalid
    the operator rolled back from this target      StayRolledBack  report the version that is current
    the inference module refused this target       StayRejected    report the refusal again
    these bytes are installed under this version   ReportReady     make current, announce if needed; ready
    failed: sas_expired, same URL                  Blocked         report the failure; await a new URL
    failed: no retry scheduled, same URL           Blocked         report the failure; await a change or retry
    failed: retry time ahead, same URL             WaitUntil       report the failure; next cycle at that time
    failed: retry time passed, or a new URL        Install         the next cycle, now
    anything else                                  Install         cycle 1 (a pending record: its cycle)

`Install.mode` is `delta` when the desired state carries a `Delta` that has not failed for this target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from edge_shared.desired import DeltaSpec, DesiredModel
from edge_shared.reported import ErrorCode
from edge_shared.repository import ModelManifest
from loader_module.errors import RollbackFailedError
from loader_module.failures import Failure
from loader_module.rejection import Rejection
from loader_module.state import LoaderState, UpdateRecord, target_key, url_digest

Mode = Literal["full", "delta"]


# --- inputs ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NoDesired:
    """The desired section names no model (a fresh deployment)."""


@dataclass(frozen=True, slots=True)
class InvalidDesired:
    """The desired section does not validate; `message` names the fields, never their values."""

    fields: tuple[str, ...]
    message: str


#: The latest desired state, as the tracker parsed it.
Desired = DesiredModel | NoDesired | InvalidDesired


@dataclass(frozen=True, slots=True)
class Installed:
    """What the model volume holds, as far as a decision needs it."""

    #: The version `current` names.
    current: str | None
    #: Readable manifests by version; the coordinator reads the desired version's, when installed.
    manifests: Mapping[str, ModelManifest]


# --- actions -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing is desired: stop any update, report `idle`."""


@dataclass(frozen=True, slots=True)
class RefuseDesired:
    """The desired state is invalid: stop any update, forget the record, report `invalid_desired`."""

    invalid: InvalidDesired


@dataclass(frozen=True, slots=True)
class StayRolledBack:
    """The operator rolled back from this target: report what is current, install nothing."""


@dataclass(frozen=True, slots=True)
class StayRejected:
    """The inference module refused this target: report the refusal, install nothing."""

    rejection: Rejection


@dataclass(frozen=True, slots=True)
class ReportReady:
    """These bytes are installed already: make them current and announce them if needed, report ready."""

    manifest: ModelManifest
    activate: bool
    announce: bool


@dataclass(frozen=True, slots=True)
class Blocked:
    """A failure that the same desired state cannot overcome: report it, wait for a change or `retry`."""

    reason: Literal["sas_expired", "retries_exhausted"]
    record: UpdateRecord


@dataclass(frozen=True, slots=True)
class WaitUntil:
    """Still failed: report the failure, then run cycle `cycle` at `at`."""

    at: datetime
    cycle: int
    mode: Mode
    record: UpdateRecord


@dataclass(frozen=True, slots=True)
class Install:
    """Run cycle `cycle` now; `after_failure` is a failure to report first (its retry time has passed)."""

    cycle: int
    mode: Mode
    after_failure: UpdateRecord | None = None


Action = Idle | RefuseDesired | StayRolledBack | StayRejected | ReportReady | Blocked | WaitUntil | Install


@dataclass(frozen=True, slots=True)
class Decision:
    """One action, and the persisted marks that a changed desired state made obsolete."""

    action: Action
    forget_rollback: bool = False
    forget_rejection: bool = False


# --- the policy --------------------------------------------------------------------------------------
def decide(
    desired: Desired, state: LoaderState, installed: Installed, now: datetime, *, force: bool = False
) -> Decision:
    """What to do about `desired` (see the table in the module docstring). A job already running for
    the same target is the coordinator's business: it hands the job the newest URL instead."""
    if isinstance(desired, NoDesired):
        return Decision(Idle())
    if isinstance(desired, InvalidDesired):
        return Decision(RefuseDesired(desired))
    key = target_key(desired)
    rolled_back = state.rolled_back_target
    if rolled_back == key and not force:
        return Decision(StayRolledBack())
    forget_rollback = rolled_back is not None and rolled_back != key
    rejected = state.rejected
    if rejected is not None and rejected.target == key and not force:
        return Decision(StayRejected(rejected), forget_rollback=forget_rollback)
    forget_rejection = rejected is not None and rejected.target is not None
    return Decision(
        _update_action(desired, key, state, installed, now, force),
        forget_rollback=forget_rollback,
        forget_rejection=forget_rejection,
    )


def _update_action(
    desired: DesiredModel, key: str, state: LoaderState, installed: Installed, now: datetime, force: bool
) -> Action:
    manifest = installed.manifests.get(desired.version)
    if manifest is not None and same_bytes(desired, manifest):
        is_current = installed.current == desired.version
        return ReportReady(
            manifest,
            activate=not is_current,
            announce=not is_current or state.announced_version != desired.version,
        )
    record = state.update
    if record is None or record.target != key:
        return Install(1, _mode(desired, None))
    mode = _mode(desired, record)
    if record.status == "pending":
        return Install(record.cycle, mode)
    if record.status != "failed" or force:
        return Install(1, mode)
    if record.url_digest != url_digest(desired):
        return Install(record.cycle + 1, mode)  # a new URL: try at once
    if record.error_code == ErrorCode.SAS_EXPIRED:
        return Blocked("sas_expired", record)
    if record.next_retry_at is None:
        return Blocked("retries_exhausted", record)
    if record.next_retry_at > now:
        return WaitUntil(record.next_retry_at, record.cycle + 1, mode, record)
    return Install(record.cycle + 1, mode, after_failure=record)


def same_bytes(desired: DesiredModel, manifest: ModelManifest) -> bool:
    """True when the installed version was made from the bytes `desired` names (by the digests it gives)."""
    if desired.content_sha256 is not None and manifest.source_sha256 != desired.content_sha256:
        return False
    if desired.content_md5 is not None and manifest.source_md5 not in (None, desired.content_md5):
        return False
    return not (desired.content_sha256 is None and manifest.source_md5 is None)


def _mode(desired: DesiredModel, record: UpdateRecord | None) -> Mode:
    return "full" if delta_to_try(desired, record) is None else "delta"


def delta_to_try(desired: DesiredModel, record: UpdateRecord | None) -> DeltaSpec | None:
    """The desired `Delta`, unless it failed before for this target (a bad patch stays bad; a new
    `Delta` is tried again)."""
    delta = desired.delta
    if delta is None:
        return None
    if (
        record is not None
        and record.target == target_key(desired)
        and record.delta_failed == delta.content_sha256
    ):
        return None
    return delta


# --- after a failure ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try the same desired state again at `at`."""

    at: datetime


@dataclass(frozen=True, slots=True)
class AwaitNewUrl:
    """The SAS expired: only a desired patch with a new URL for the same target can help."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """A final failure: the same bytes would fail again; a new desired state or `retry` is needed."""


AfterFailure = RetryAt | AwaitNewUrl | GiveUp


def after_failure(failure: Failure, now: datetime, retry_after: float) -> AfterFailure:
    """What a failed update does next."""
    if failure.code == ErrorCode.SAS_EXPIRED:
        return AwaitNewUrl()
    if failure.retry_later:
        return RetryAt(now + timedelta(seconds=retry_after))
    return GiveUp()


# --- operator actions --------------------------------------------------------------------------------
def rollback_version(requested: str | None, current: str | None, installed: Sequence[str]) -> str:
    """The version a `rollback` makes current: `requested`, or the newest one installed before the
    current one. Raises `RollbackFailedError` when there is none."""
    if requested is not None:
        if requested not in installed:
            raise RollbackFailedError(f"version {requested!r} is not installed")
        return requested
    if current not in installed:
        raise RollbackFailedError("no current version to roll back from")
    older = installed[installed.index(current) + 1 :]
    if not older:
        raise RollbackFailedError("no older version is installed")
    return older[0]
