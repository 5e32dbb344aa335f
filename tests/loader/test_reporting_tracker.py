"""The reporter (typed `ModelUpdate` changes, reported patches of only what changed, throttled progress)
and the desired-state tracker (merge patches, `$version`, early patches, periodic re-read), each on a
recording edgeHub stand-in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge_shared.desired import DesiredModel, desired_patch
from edge_shared.edgehub import Handlers, OutputMessage, Twin
from edge_shared.messages import OUTPUT_STATUS
from edge_shared.reported import ErrorCode, LoaderReported, ModelUpdate, UpdateError, UpdateState
from loader_module.decide import InvalidDesired, NoDesired
from loader_module.reporting import Reporter, evolve
from loader_module.tracker import TWIN_REFRESH_SECONDS, DesiredTracker
from tests.loader.conftest import ManualClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MODEL = desired_patch("m-1.zip", "https://h/m-1.zip?sig=S", content_md5="00" * 16)


@dataclass
class RecordingHub:
    """Records reported patches and messages; `twins` are returned by `get_twin`, one per call."""

    patches: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    twins: list[Twin | Exception] = field(default_factory=list)
    twin_calls: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self, handlers: Handlers) -> None:
        del handlers

    async def get_twin(self) -> Twin:
        self.twin_calls.set()
        answer = self.twins.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def patch_reported(self, patch: Mapping[str, Any]) -> None:
        self.patches.append(dict(patch))

    async def send_output(self, output_name: str, message: OutputMessage) -> None:
        self.outputs.append((output_name, json.loads(message.data)))

    async def shutdown(self) -> None:
        pass


# --- the reporter --------------------------------------------------------------------------------------
def test_evolve_keeps_every_field_it_is_not_told_to_change() -> None:
    full = ModelUpdate(
        state=UpdateState.FAILED,
        file_name="m-1.zip",
        version="m-1",
        desired_version=7,
        bytes_done=5,
        bytes_total=10,
        percent=50.0,
        attempt=2,
        error=UpdateError(code="download_failed", message="cut"),
        next_retry_at=T0,
        source="delta",
        started_at=T0,
        finished_at=T0,
    )
    assert full.model_fields_set == set(ModelUpdate.model_fields)  # every field differs from its default
    assert evolve(full) == full
    changed = evolve(full, state=UpdateState.READY, error=None)
    assert changed.state is UpdateState.READY and changed.error is None
    assert changed.model_dump(exclude={"state", "error"}) == full.model_dump(exclude={"state", "error"})


def test_evolve_validates_like_the_model() -> None:
    with pytest.raises(ValueError, match="percent"):
        evolve(ModelUpdate(), percent=101.0)


def test_a_reported_patch_carries_only_the_properties_set() -> None:
    assert LoaderReported(latest_file_name="m-1.zip").to_patch() == {"LatestAIModelFileName": "m-1.zip"}
    patch = LoaderReported(model_update=ModelUpdate(version="m-1"), installed_models=["m-1"]).to_patch()
    assert set(patch) == {"ModelUpdate", "InstalledModels"}
    assert patch["ModelUpdate"]["version"] == "m-1" and patch["ModelUpdate"]["bytesDone"] == 0


async def test_progress_is_throttled_but_a_new_attempt_and_a_new_download_are_reported_at_once() -> None:
    hub, clock = RecordingHub(), ManualClock()
    reporter = Reporter(hub, clock, progress_interval=10.0)
    await reporter.show(ModelUpdate(state=UpdateState.DOWNLOADING, version="m-1"))
    await reporter.progress(1, 100, 1.0, 1)  # the first progress of a download
    await reporter.progress(2, 100, 2.0, 1)  # within the interval: held back
    clock.advance(10)
    await reporter.progress(3, 100, 3.0, 1)
    await reporter.progress(4, 100, 4.0, 2)  # a new attempt
    await reporter.restart_progress("full", 200)  # the delta failed: the full ZIP from zero
    await reporter.progress(5, 200, 2.5, 1)
    done = [patch["ModelUpdate"]["bytesDone"] for patch in hub.patches]
    assert done == [0, 1, 3, 4, 0, 5]
    assert hub.patches[4]["ModelUpdate"]["source"] == "full" and hub.patches[4]["ModelUpdate"]["attempt"] == 0
    assert reporter.update.bytes_done == 5


async def test_a_failure_keeps_the_progress_it_reached_and_sends_a_status_event() -> None:
    hub, clock = RecordingHub(), ManualClock()
    reporter = Reporter(hub, clock, progress_interval=0.0)
    await reporter.show(ModelUpdate(state=UpdateState.DOWNLOADING, version="m-1", started_at=T0))
    await reporter.progress(40, 100, 40.0, 3)
    clock.advance(5)
    await reporter.failed(
        ErrorCode.DOWNLOAD_FAILED,
        "GET https://h/m-1.zip?sig=SECRET failed",
        file_name="m-1.zip",
        version="m-1",
        desired_version=4,
        started=T0,
        next_retry=T0 + timedelta(minutes=1),
        source="full",
        bytes_downloaded=40,
    )
    last = hub.patches[-1]["ModelUpdate"]
    assert last["state"] == "failed" and last["bytesDone"] == 40 and last["attempt"] == 3
    assert last["percent"] == 40.0 and last["desiredVersion"] == 4
    assert last["nextRetryAt"] == "2026-01-01T00:01:00Z" and last["finishedAt"] == "2026-01-01T00:00:05Z"
    assert "SECRET" not in json.dumps(hub.patches) + json.dumps(hub.outputs)
    [(output, event)] = hub.outputs
    assert output == OUTPUT_STATUS
    assert event["state"] == "failed" and event["bytesDownloaded"] == 40 and event["durationSeconds"] == 5.0


async def test_a_failure_reported_again_starts_its_attempts_from_zero() -> None:
    hub = RecordingHub()
    reporter = Reporter(hub, ManualClock(), progress_interval=0.0)
    await reporter.show(ModelUpdate(state=UpdateState.DOWNLOADING, attempt=4, bytes_done=9))
    await reporter.failed_before(
        code="sas_expired",
        message="403",
        file_name="m-1.zip",
        version="m-1",
        desired_version=2,
        next_retry=None,
    )
    last = hub.patches[-1]["ModelUpdate"]
    assert last["state"] == "failed" and last["attempt"] == 0 and last["bytesDone"] == 9
    assert last["error"] == {"code": "sas_expired", "message": "403"}


async def test_inventory_names_the_latest_file_only_when_given() -> None:
    hub = RecordingHub()
    reporter = Reporter(hub, ManualClock(), progress_interval=0.0)
    await reporter.inventory(ModelUpdate(), ["m-2", "m-1"])
    await reporter.inventory(reporter.ended(T0), ["m-2", "m-1"], latest_file_name="m-2.zip")
    assert set(hub.patches[0]) == {"ModelUpdate", "InstalledModels"}
    assert hub.patches[1]["LatestAIModelFileName"] == "m-2.zip"
    assert hub.patches[1]["ModelUpdate"]["state"] == "ready" and hub.patches[1]["InstalledModels"] == [
        "m-2",
        "m-1",
    ]


async def test_a_lost_link_does_not_fail_reporting() -> None:
    class Unreachable(RecordingHub):
        async def patch_reported(self, patch: Mapping[str, Any]) -> None:
            raise ConnectionError(f"link down; {len(patch)} properties not reported")

    reporter = Reporter(Unreachable(), ManualClock(), progress_interval=0.0)
    assert await reporter.patch(LoaderReported(latest_file_name="m-1.zip")) is False
    await reporter.stage(UpdateState.VERIFYING)
    assert reporter.update.state is UpdateState.VERIFYING


# --- the tracker ---------------------------------------------------------------------------------------
def tracker(hub: RecordingHub | None = None, clock: ManualClock | None = None) -> DesiredTracker:
    return DesiredTracker(hub or RecordingHub(), clock or ManualClock(), allow_insecure_http=False)


def test_patches_before_the_twin_is_read_wait_for_it() -> None:
    desired = tracker()
    assert desired.merge({"$version": 3, **MODEL}) is False  # queued
    desired.read_twin(Twin(desired={"$version": 2}))
    assert desired.version == 3 and isinstance(desired.latest(), DesiredModel)


def test_a_patch_the_twin_read_already_holds_is_dropped() -> None:
    desired = tracker()
    desired.read_twin(Twin(desired={"$version": 5, **MODEL}))
    assert desired.merge({"$version": 5, "FileName": None}) is False
    assert desired.merge({"$version": 4, "FileName": None}) is False
    assert desired.latest_model() is not None and desired.version == 5
    assert desired.merge({"$version": 6, "Version": "m-2"}) is True
    model = desired.latest_model()
    assert model is not None and model.version == "m-2" and desired.version == 6


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({}, NoDesired()),
        ({"FileName": ""}, NoDesired()),
        ({**MODEL, "DownloadUrl": "http://h/m-1.zip"}, InvalidDesired),
        ({"FileName": "m-1.zip"}, InvalidDesired),
    ],
)
def test_the_latest_desired_state_is_nothing_invalid_or_a_model(
    properties: dict[str, Any], expected: object
) -> None:
    desired = tracker()
    desired.read_twin(Twin(desired={"$version": 1, **properties}))
    latest = desired.latest()
    if isinstance(expected, type):
        assert isinstance(latest, expected) and desired.latest_model() is None
    else:
        assert latest == expected


def test_an_invalid_desired_state_names_the_field_never_the_value() -> None:
    desired = tracker()
    desired.read_twin(Twin(desired={**MODEL, "DownloadUrl": "http://h/m-1.zip?sig=SECRET"}))
    latest = desired.latest()
    assert isinstance(latest, InvalidDesired) and latest.fields == ("DownloadUrl",)
    assert "SECRET" not in latest.message


async def test_the_periodic_refresh_takes_only_a_newer_twin_and_survives_a_lost_link() -> None:
    clock = ManualClock()
    hub = RecordingHub(
        twins=[
            ConnectionError("link down"),
            Twin(desired={"$version": 1}),  # not newer
            Twin(desired={"$version": 4, **MODEL}),
        ]
    )
    desired = tracker(hub, clock)
    desired.read_twin(Twin(desired={"$version": 1}))
    newer = asyncio.Event()

    async def on_newer() -> None:
        newer.set()

    refresher = asyncio.create_task(desired.refresh_forever(on_newer))
    try:
        for calls in range(1, 4):
            hub.twin_calls.clear()
            await clock.wait_for_sleep_calls(calls)
            clock.advance(TWIN_REFRESH_SECONDS)
            await asyncio.wait_for(hub.twin_calls.wait(), 10)
        await asyncio.wait_for(newer.wait(), 10)
    finally:
        refresher.cancel()
    assert desired.version == 4 and desired.latest_model() is not None and hub.twins == []
