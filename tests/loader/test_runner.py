"""The update runner on its own: HTTP through httpx's `MockTransport`, the coordinator's side faked by a
recorder of `UpdateEvents`. What it installs, persists and tells, cycle by cycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Unpack

import httpx
import pytest

from edge_shared.desired import DeltaFields, DesiredFields, DesiredModel, parse_desired
from edge_shared.reported import ErrorCode, ModelUpdate, Source, UpdateState
from edge_shared.repository import ModelManifest, ModelRepository
from loader_module.failures import Failure
from loader_module.runner import UpdateJob, UpdateRunner
from loader_module.settings import LoaderSettings
from loader_module.state import StateKeeper, StateStore, target_key
from tests.loader.conftest import ManualClock, desired_for, make_settings, model_zip

Handler = Callable[[httpx.Request], httpx.Response]
RETRY_AFTER = 600.0


@dataclass
class RecordedEvents:
    """`UpdateEvents` that only remembers what it was told, in order."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    protect: frozenset[str] = frozenset()
    failures: asyncio.Queue[Failure] = field(default_factory=asyncio.Queue)
    progressed: asyncio.Event = field(default_factory=asyncio.Event)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls if name != "progress"]

    def told(self, name: str) -> list[Any]:
        return [value for called, value in self.calls if called == name]

    async def begun(self, update: ModelUpdate) -> None:
        self.calls.append(("begun", update))

    async def stage(self, state: UpdateState) -> None:
        self.calls.append(("stage", state))

    async def restarted(self, source: Source, bytes_total: int | None) -> None:
        self.calls.append(("restarted", (source, bytes_total)))

    async def progress(
        self, bytes_done: int, bytes_total: int | None, percent: float | None, attempt: int
    ) -> None:
        self.calls.append(("progress", (bytes_done, bytes_total, percent, attempt)))
        self.progressed.set()

    def retained(self, installing: str) -> frozenset[str]:
        self.calls.append(("retained", installing))
        return self.protect

    async def announce(self, manifest: ModelManifest) -> None:
        self.calls.append(("announce", manifest.version))

    async def ready(
        self, job: UpdateJob, manifest: ModelManifest, *, started: datetime, fetched: int, source: Source
    ) -> None:
        self.calls.append(("ready", (job.key, manifest.version, started, fetched, source)))

    async def failed(
        self, job: UpdateJob, failure: Failure, *, started: datetime, next_retry: datetime | None
    ) -> None:
        self.calls.append(("failed", (job.key, failure.code, started, next_retry)))
        self.failures.put_nowait(failure)


def serve(routes: dict[str, bytes | int]) -> Handler:
    """Answers GET <path> with the bytes, or with the status code, given for the path."""

    def handler(request: httpx.Request) -> httpx.Response:
        answer = routes.get(request.url.path, 404)
        if isinstance(answer, int):
            return httpx.Response(answer)
        headers = {"ETag": '"1"', "Content-Length": str(len(answer))}
        return httpx.Response(200, stream=httpx.ByteStream(answer), headers=headers)

    return handler


@dataclass
class Rig:
    settings: LoaderSettings
    repo: ModelRepository
    keeper: StateKeeper
    events: RecordedEvents
    clock: ManualClock
    runner: UpdateRunner

    async def run(self, desired: DesiredModel, cycle: int = 1) -> UpdateJob:
        job = UpdateJob(desired, desired_version=1, cycle=cycle)
        self.runner.start(job)
        return job

    async def finish(self) -> None:
        """Until the job ends (bounded: a job that sleeps until a retry would never end)."""
        await asyncio.wait_for(self.runner.wait_idle(), 20)


@pytest.fixture
def routes() -> dict[str, bytes | int]:
    return {}


@pytest.fixture
async def rig(tmp_path: Path, routes: dict[str, bytes | int]) -> AsyncIterator[Rig]:
    settings = make_settings(tmp_path, retry_after=RETRY_AFTER, keep_versions=1)
    repo = ModelRepository(tmp_path)
    repo.ensure_layout()
    keeper = StateKeeper(StateStore(tmp_path))
    events, clock = RecordedEvents(), ManualClock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve(routes))) as http:
        runner = UpdateRunner(settings, repo, keeper, http, clock, events)
        try:
            yield Rig(settings, repo, keeper, events, clock, runner)
        finally:
            await runner.cancel()


def desired(
    data: bytes, label: str, path: str | None = None, **fields: Unpack[DesiredFields]
) -> DesiredModel:
    """The desired model for `data` published as `<label>.zip` (at `path`, or `/m/<label>.zip`)."""
    url = f"https://storage.example{path or f'/m/{label}.zip'}?sig=S"
    return parse_desired(desired_for(data, url, f"{label}.zip", **fields))


async def test_a_download_is_verified_installed_pruned_announced_and_reported_ready(
    rig: Rig, routes: dict[str, bytes | int]
) -> None:
    data = model_zip("onnx")
    routes["/m/v1.zip"] = data
    await rig.run(desired(data, "v1"))
    await rig.finish()
    assert rig.events.names() == [
        "begun",
        "stage",
        "stage",
        "retained",
        "announce",
        "ready",
    ]
    [begun] = rig.events.told("begun")
    assert begun.state is UpdateState.DOWNLOADING and begun.version == "v1" and begun.source == "full"
    assert rig.events.told("stage") == [UpdateState.VERIFYING, UpdateState.INSTALLING]
    wanted = desired(data, "v1")
    assert rig.events.told("ready") == [(target_key(wanted), "v1", rig.clock.now(), len(data), "full")]
    assert rig.events.told("progress")[-1] == (len(data), len(data), 100.0, 1)
    assert rig.repo.current_version() == "v1"
    assert rig.keeper.state.update is None and StateStore(rig.settings.model_root).load().update is None
    assert list(rig.repo.downloads_dir.iterdir()) == []


async def test_retention_keeps_what_the_coordinator_protects(
    rig: Rig, routes: dict[str, bytes | int]
) -> None:
    for index in range(3):
        data = model_zip("onnx", padding=index + 1)
        routes[f"/m/v{index}.zip"] = data
        rig.events.protect = frozenset({"v0"})
        await rig.run(desired(data, f"v{index}"))
        await rig.finish()
    assert sorted(rig.repo.installed_versions()) == ["v0", "v2"]  # keep_versions=1, and v0 protected


async def test_bad_bytes_fail_for_good_and_leave_nothing_installed(
    rig: Rig, routes: dict[str, bytes | int]
) -> None:
    data = model_zip("onnx")
    routes["/m/v1.zip"] = data + b"tampered"
    wanted = desired(data, "v1")
    await rig.run(wanted)
    await rig.finish()
    assert rig.events.told("failed") == [
        (target_key(wanted), ErrorCode.CHECKSUM_MISMATCH, rig.clock.now(), None)
    ]
    record = rig.keeper.state.update
    assert record is not None and record.status == "failed" and record.next_retry_at is None
    assert record.error_code == "checksum_mismatch" and record.cycle == 1
    assert rig.repo.installed_versions() == [] and rig.repo.current_version() is None
    assert list(rig.repo.downloads_dir.iterdir()) == []


async def test_a_transient_failure_is_retried_at_the_scheduled_time(
    rig: Rig, routes: dict[str, bytes | int]
) -> None:
    data = model_zip("onnx")
    routes["/m/v1.zip"] = 503
    await rig.run(desired(data, "v1"))
    failure = await asyncio.wait_for(rig.events.failures.get(), 10)
    assert failure.code == ErrorCode.DOWNLOAD_FAILED and failure.retry_later
    retry_at = rig.clock.now() + timedelta(seconds=RETRY_AFTER)
    assert [told[1:] for told in rig.events.told("failed")] == [
        (ErrorCode.DOWNLOAD_FAILED, rig.clock.now(), retry_at)
    ]
    record = rig.keeper.state.update
    assert record is not None and record.next_retry_at == retry_at
    routes["/m/v1.zip"] = data
    await asyncio.wait_for(rig.clock.sleeping.wait(), 10)
    rig.clock.advance(RETRY_AFTER)
    await rig.finish()
    assert rig.repo.current_version() == "v1"
    assert [update.version for update in rig.events.told("begun")] == ["v1", "v1"]


async def test_an_expired_sas_waits_for_a_new_url_of_the_same_target(
    rig: Rig, routes: dict[str, bytes | int]
) -> None:
    data = model_zip("onnx")
    routes["/m/old.zip"] = 403
    job = await rig.run(desired(data, "v1", "/m/old.zip"))
    failure = await asyncio.wait_for(rig.events.failures.get(), 10)
    assert failure.code == ErrorCode.SAS_EXPIRED
    assert [told[1:] for told in rig.events.told("failed")] == [
        (ErrorCode.SAS_EXPIRED, rig.clock.now(), None)
    ]
    assert job.task is not None and not job.task.done()  # waiting, not given up
    routes["/m/new.zip"] = data
    job.follow(desired(data, "v1", "/m/new.zip"))
    await rig.finish()
    assert rig.repo.current_version() == "v1" and job.cycle == 2


async def test_an_unusable_delta_falls_back_to_the_full_zip_and_is_not_tried_again(
    rig: Rig, routes: dict[str, bytes | int]
) -> None:
    data = model_zip("onnx")
    routes["/m/v1.zip"] = 503
    delta = DeltaFields(
        base_version="v0",  # not installed
        download_url="https://storage.example/m/v1.delta?sig=S",
        content_sha256="0" * 64,
        format="emdelta/1",
    )
    await rig.run(desired(data, "v1", delta=delta))
    await asyncio.wait_for(rig.events.failures.get(), 10)
    assert rig.events.told("restarted") == [("full", None)]  # the full ZIP, from zero
    record = rig.keeper.state.update
    assert record is not None and record.delta_failed == "0" * 64
    routes["/m/v1.zip"] = data
    await asyncio.wait_for(rig.clock.sleeping.wait(), 10)
    rig.clock.advance(RETRY_AFTER)
    await rig.finish()
    assert rig.events.told("restarted") == [("full", None)]  # the next cycle went straight to the ZIP
    assert [told[1:] for told in rig.events.told("ready")] == [("v1", rig.clock.now(), len(data), "full")]


async def test_cancelling_a_job_parks_its_partial_download(rig: Rig) -> None:
    gate = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"PK" * 1000
        await gate.wait()

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stalled(), headers={"ETag": '"1"', "Content-Length": "9999"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        rig.runner = UpdateRunner(rig.settings, rig.repo, rig.keeper, http, rig.clock, rig.events)
        await rig.run(desired(model_zip("onnx"), "v1"))
        await asyncio.wait_for(rig.events.progressed.wait(), 10)
        await rig.runner.cancel()
    assert rig.runner.job is None and rig.events.told("failed") == []
    record = rig.keeper.state.update
    assert record is not None and record.status == "pending"
    assert [part.name for part in rig.repo.downloads_dir.glob("*.part")] == [f"{record.target}.part"]
