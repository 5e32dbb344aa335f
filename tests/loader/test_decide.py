"""The loader's policy as a plain function: every row of `decide`'s action table, without any server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from edge_shared.desired import DeltaFields, DesiredFields, DesiredModel, desired_patch, parse_desired
from edge_shared.reported import ErrorCode
from edge_shared.repository import ModelManifest
from loader_module.decide import (
    AwaitNewUrl,
    Blocked,
    Decision,
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
    delta_to_try,
    rollback_version,
    same_bytes,
)
from loader_module.errors import RollbackFailedError
from loader_module.failures import Failure
from loader_module.rejection import Rejection
from loader_module.state import LoaderState, UpdateRecord, target_key, url_digest

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHA = "ab" * 32
MD5 = "cd" * 16
DELTA_SHA = "ef" * 32
URL = "https://storage.example/m/v2.zip?sig=ONE"
NEW_URL = "https://storage.example/m/v2.zip?sig=TWO"


def desired(url: str = URL, *, with_delta: bool = False) -> DesiredModel:
    delta = DeltaFields(
        base_version="v1",
        download_url="https://storage.example/m/v2.delta?sig=ONE",
        content_sha256=DELTA_SHA,
        format="emdelta/1",
    )
    return parse_desired(
        desired_patch("v2.zip", url, content_sha256=SHA, delta=delta if with_delta else None)
    )


TARGET = target_key(desired())


def record(
    status: str = "failed",
    *,
    url: str = URL,
    code: ErrorCode | None = ErrorCode.DOWNLOAD_FAILED,
    cycle: int = 1,
    retry_at: datetime | None = NOW + timedelta(minutes=1),
    target: str = TARGET,
    delta_failed: str | None = None,
) -> UpdateRecord:
    return UpdateRecord(
        target=target,
        version="v2",
        file_name="v2.zip",
        url_digest=url_digest(desired(url)),
        status=status,  # type: ignore[arg-type]
        error_code=None if code is None else str(code),
        error_message="failed" if code is not None else None,
        cycle=cycle,
        next_retry_at=retry_at,
        delta_failed=delta_failed,
    )


def manifest(version: str = "v2", *, sha: str = SHA, md5: str | None = MD5) -> ModelManifest:
    return ModelManifest(
        version=version,
        file_name=f"{version}.zip",
        runtime="onnx",
        model_file="model.onnx",
        files={"model.onnx": "00" * 32},
        source_sha256=sha,
        source_md5=md5,
        installed_at=NOW,
    )


def rejection(target: str | None = TARGET) -> Rejection:
    return Rejection(target=target, version="v2", file_name="v2.zip", code="load_failed", message="bad")


NOTHING = Installed(current=None, manifests={})
ON_V1 = Installed(current="v1", manifests={"v1": manifest("v1", sha="11" * 32)})


@dataclass(frozen=True)
class Row:
    wanted: DesiredModel | NoDesired | InvalidDesired = field(default_factory=desired)
    state: LoaderState = field(default_factory=LoaderState)
    installed: Installed = NOTHING
    force: bool = False


CASES: dict[str, tuple[Row, Decision]] = {
    "nothing desired": (Row(wanted=NoDesired()), Decision(Idle())),
    "nothing desired with a failure recorded": (
        Row(wanted=NoDesired(), state=LoaderState(update=record())),
        Decision(Idle()),
    ),
    "invalid desired": (
        Row(wanted=InvalidDesired(("DownloadUrl",), "DownloadUrl: must be an https URL")),
        Decision(RefuseDesired(InvalidDesired(("DownloadUrl",), "DownloadUrl: must be an https URL"))),
    ),
    "a new target": (Row(installed=ON_V1), Decision(Install(1, "full"))),
    "a new target with a delta": (Row(wanted=desired(with_delta=True)), Decision(Install(1, "delta"))),
    "the same target installed and current, announced": (
        Row(
            state=LoaderState(announced_version="v2"),
            installed=Installed(current="v2", manifests={"v2": manifest()}),
        ),
        Decision(ReportReady(manifest(), activate=False, announce=False)),
    ),
    "the same target installed and current, announcement lost": (
        Row(state=LoaderState(announced_version="v1"), installed=Installed("v2", {"v2": manifest()})),
        Decision(ReportReady(manifest(), activate=False, announce=True)),
    ),
    "the same target installed, not current": (
        Row(state=LoaderState(announced_version="v1"), installed=Installed("v1", {"v2": manifest()})),
        Decision(ReportReady(manifest(), activate=True, announce=True)),
    ),
    "the same version installed from other bytes": (
        Row(installed=Installed("v2", {"v2": manifest(sha="99" * 32)})),
        Decision(Install(1, "full")),
    ),
    "installed from the same MD5 when only the MD5 is desired": (
        Row(
            wanted=parse_desired(desired_patch("v2.zip", URL, content_md5=MD5)),
            state=LoaderState(announced_version="v2"),
            installed=Installed("v2", {"v2": manifest()}),
        ),
        Decision(ReportReady(manifest(), activate=False, announce=False)),
    ),
    "a pending update resumes its cycle": (
        Row(state=LoaderState(update=record("pending", code=None, cycle=3, retry_at=None))),
        Decision(Install(3, "full")),
    ),
    "a pending update of another target starts anew": (
        Row(state=LoaderState(update=record("pending", code=None, cycle=3, target="other-0"))),
        Decision(Install(1, "full")),
    ),
    "failed, retry time not reached": (
        Row(state=LoaderState(update=record(cycle=2))),
        Decision(WaitUntil(NOW + timedelta(minutes=1), 3, "full", record(cycle=2))),
    ),
    "failed, retry time reached": (
        Row(state=LoaderState(update=record(retry_at=NOW))),
        Decision(Install(2, "full", after_failure=record(retry_at=NOW))),
    ),
    "failed, a new URL for the same bytes": (
        Row(wanted=desired(NEW_URL), state=LoaderState(update=record(cycle=4))),
        Decision(Install(5, "full")),
    ),
    "failed for good (no retry), same URL": (
        Row(state=LoaderState(update=record(code=ErrorCode.CHECKSUM_MISMATCH, retry_at=None))),
        Decision(Blocked("retries_exhausted", record(code=ErrorCode.CHECKSUM_MISMATCH, retry_at=None))),
    ),
    "failed for good, a new URL": (
        Row(wanted=desired(NEW_URL), state=LoaderState(update=record(retry_at=None))),
        Decision(Install(2, "full")),
    ),
    "SAS expired, same URL": (
        Row(state=LoaderState(update=record(code=ErrorCode.SAS_EXPIRED, retry_at=None))),
        Decision(Blocked("sas_expired", record(code=ErrorCode.SAS_EXPIRED, retry_at=None))),
    ),
    "SAS expired, a new URL": (
        Row(wanted=desired(NEW_URL), state=LoaderState(update=record(code=ErrorCode.SAS_EXPIRED))),
        Decision(Install(2, "full")),
    ),
    "failed, forced by the operator": (
        Row(state=LoaderState(update=record(retry_at=None, cycle=5)), force=True),
        Decision(Install(1, "full")),
    ),
    "a failure of another target is ignored": (
        Row(state=LoaderState(update=record(target="other-0", retry_at=None))),
        Decision(Install(1, "full")),
    ),
    "the last update of this target ended ready": (
        Row(state=LoaderState(update=record("ready", code=None, cycle=2))),
        Decision(Install(1, "full")),
    ),
    "the delta failed before for this target": (
        Row(
            wanted=desired(with_delta=True),
            state=LoaderState(update=record(delta_failed=DELTA_SHA, retry_at=NOW)),
        ),
        Decision(Install(2, "full", after_failure=record(delta_failed=DELTA_SHA, retry_at=NOW))),
    ),
    "another delta failed before for this target": (
        Row(
            wanted=desired(with_delta=True),
            state=LoaderState(update=record("pending", delta_failed="00" * 32)),
        ),
        Decision(Install(1, "delta")),
    ),
    "rolled back from this target": (
        Row(state=LoaderState(rolled_back_target=TARGET, update=record())),
        Decision(StayRolledBack()),
    ),
    "rolled back from this target, retried": (
        Row(state=LoaderState(rolled_back_target=TARGET), force=True),
        Decision(Install(1, "full")),
    ),
    "rolled back from another target": (
        Row(state=LoaderState(rolled_back_target="old-0")),
        Decision(Install(1, "full"), forget_rollback=True),
    ),
    "rolled back from another target, this one rejected": (
        Row(state=LoaderState(rolled_back_target="old-0", rejected=rejection())),
        Decision(StayRejected(rejection()), forget_rollback=True),
    ),
    "rolled back from this target, another one rejected": (
        Row(state=LoaderState(rolled_back_target=TARGET, rejected=rejection("old-0"))),
        Decision(StayRolledBack()),
    ),
    "the inference module refused this target": (
        Row(state=LoaderState(rejected=rejection()), installed=Installed("v1", {"v2": manifest()})),
        Decision(StayRejected(rejection())),
    ),
    "the inference module refused another target": (
        Row(state=LoaderState(rejected=rejection("old-0"))),
        Decision(Install(1, "full"), forget_rejection=True),
    ),
    "the inference module refused a version that was not desired": (
        Row(state=LoaderState(rejected=rejection(None))),
        Decision(Install(1, "full")),
    ),
    "refused, retried by the operator": (
        Row(state=LoaderState(rejected=rejection()), force=True),
        Decision(Install(1, "full"), forget_rejection=True),
    ),
    "refused, then the same bytes desired are installed elsewhere": (
        Row(
            state=LoaderState(rejected=rejection("old-0"), announced_version="v2"),
            installed=Installed("v2", {"v2": manifest()}),
        ),
        Decision(ReportReady(manifest(), activate=False, announce=False), forget_rejection=True),
    ),
}


@pytest.mark.parametrize(("row", "expected"), list(CASES.values()), ids=list(CASES))
def test_decide_follows_the_action_table(row: Row, expected: Decision) -> None:
    assert decide(row.wanted, row.state, row.installed, NOW, force=row.force) == expected


def test_the_decision_reads_the_clock_only_through_now() -> None:
    failed = LoaderState(update=record(retry_at=NOW + timedelta(minutes=1)))
    before = decide(desired(), failed, NOTHING, NOW)
    after = decide(desired(), failed, NOTHING, NOW + timedelta(minutes=2))
    assert isinstance(before.action, WaitUntil) and isinstance(after.action, Install)


@pytest.mark.parametrize(
    ("digests", "installed_md5", "same"),
    [
        (DesiredFields(content_sha256=SHA), MD5, True),
        (DesiredFields(content_sha256="99" * 32), MD5, False),
        (DesiredFields(content_md5=MD5), MD5, True),
        (DesiredFields(content_md5=MD5), "00" * 16, False),
        (DesiredFields(content_md5=MD5), None, False),  # nothing to compare the MD5 with: download again
        (DesiredFields(content_sha256=SHA, content_md5=MD5), None, True),
        (DesiredFields(content_sha256=SHA, content_md5="00" * 16), MD5, False),
    ],
)
def test_installed_bytes_are_compared_by_the_digests_desired(
    digests: DesiredFields, installed_md5: str | None, same: bool
) -> None:
    wanted = parse_desired(desired_patch("v2.zip", URL, **digests))
    assert same_bytes(wanted, manifest(md5=installed_md5)) is same


def test_a_delta_is_not_tried_again_for_the_target_it_failed_for() -> None:
    wanted = desired(with_delta=True)
    assert delta_to_try(wanted, None) == wanted.delta
    assert delta_to_try(wanted, record(delta_failed=DELTA_SHA)) is None
    assert delta_to_try(wanted, record(delta_failed=DELTA_SHA, target="other-0")) == wanted.delta
    assert delta_to_try(desired(), record(delta_failed=DELTA_SHA)) is None


FAILURES: dict[str, tuple[Failure, Callable[[datetime], object]]] = {
    "transient: retried after the delay": (
        Failure(ErrorCode.DOWNLOAD_FAILED, "cut", retry_later=True),
        lambda now: RetryAt(now + timedelta(seconds=60)),
    ),
    "unexpected: retried after the delay": (
        Failure(ErrorCode.INTERNAL, "bug", retry_later=True),
        lambda now: RetryAt(now + timedelta(seconds=60)),
    ),
    "SAS expired: waits for a new URL": (
        Failure(ErrorCode.SAS_EXPIRED, "403", retry_later=False),
        lambda _: AwaitNewUrl(),
    ),
    "bad bytes: final": (Failure(ErrorCode.CHECKSUM_MISMATCH, "md5", retry_later=False), lambda _: GiveUp()),
}


@pytest.mark.parametrize(("failure", "expected"), list(FAILURES.values()), ids=list(FAILURES))
def test_after_a_failure(failure: Failure, expected: Callable[[datetime], object]) -> None:
    assert after_failure(failure, NOW, 60.0) == expected(NOW)


@pytest.mark.parametrize(
    ("requested", "current", "installed", "expected"),
    [
        (None, "v3", ["v3", "v2", "v1"], "v2"),
        (None, "v2", ["v3", "v2", "v1"], "v1"),
        ("v1", "v3", ["v3", "v2", "v1"], "v1"),
        ("v3", "v3", ["v3", "v2"], "v3"),
    ],
)
def test_rollback_picks_the_requested_or_the_previous_version(
    requested: str | None, current: str | None, installed: list[str], expected: str
) -> None:
    assert rollback_version(requested, current, installed) == expected


@pytest.mark.parametrize(
    ("requested", "current", "installed", "message"),
    [
        ("v9", "v3", ["v3", "v2"], "'v9' is not installed"),
        (None, None, ["v3", "v2"], "no current version"),
        (None, "v0", ["v3", "v2"], "no current version"),
        (None, "v1", ["v3", "v1"], "no older version"),
        (None, "v1", ["v1"], "no older version"),
    ],
)
def test_rollback_without_a_version_to_go_to_fails(
    requested: str | None, current: str | None, installed: list[str], message: str
) -> None:
    with pytest.raises(RollbackFailedError, match=message):
        rollback_version(requested, current, installed)
