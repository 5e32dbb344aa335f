"""The leader's pool in this process, with real follower processes: joining with the serving model,
swaps committed in both, a follower's own refusal failing the swap, a killed follower replaced."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edge_tools.fixtures import FixtureCatalog
from inference_module.announcement import LoadRequest
from inference_module.errors import (
    FailingModelError,
    InferenceError,
    ModelLoadError,
    NoCurrentModelError,
    WorkerFailedError,
)
from inference_module.metrics import Metrics
from inference_module.runtimes import default_registry
from inference_module.service import ModelService
from inference_module.settings import InferenceSettings
from inference_module.slot import ModelSlot
from inference_module.workers.channel import Channel
from inference_module.workers.follower import FollowerLink
from inference_module.workers.handoff import hand
from inference_module.workers.messages import WireLoadRequest
from inference_module.workers.pool import Follower, WorkerPool
from tests.inference.helpers import install_model

pytestmark = pytest.mark.integration
TIMEOUT = 60.0


@asynccontextmanager
async def leader(root: Path) -> AsyncIterator[tuple[ModelService, WorkerPool]]:
    settings = InferenceSettings(
        model_root=root, edgehub=False, workers=2, pipeline_threads=1, worker_ping_seconds=1.0
    )
    slot = ModelSlot()
    service = ModelService(settings, slot, Metrics(), default_registry())
    pool = WorkerPool(settings)
    service.attach_peers(pool)
    await service.load_current("startup")
    await pool.start(service, slot)
    try:
        yield service, pool
    finally:
        await asyncio.wait_for(pool.stop(), TIMEOUT)
        slot.close()


async def ask(follower: Follower, path: str) -> dict[str, object]:
    """`GET path` on a connection handed to `follower`, as the leader hands a client's connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        accepted, _ = await asyncio.to_thread(listener.accept)
        with accepted:
            assert hand(follower.handoff, accepted)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer[:200]
    result: dict[str, object] = json.loads(body)
    return result


async def test_a_follower_joins_swaps_with_the_leader_and_refuses_what_it_cannot_load(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    async with leader(model_root) as (service, pool):
        (follower,) = await asyncio.wait_for(pool.wait_ready(1), TIMEOUT)
        assert (await ask(follower, "/model"))["version"] == "v1"  # joined with the serving model

        install_model(model_root, catalog, "tiny-yolo-2", version="v2")
        assert (await service.load_current("reload")).version == "v2"
        assert (await ask(follower, "/model"))["version"] == "v2"

        # A model only the follower is asked to build, and cannot: its own error comes back.
        broken = model_root / "models" / "v3"
        shutil.copytree(model_root / "models" / "v2", broken)
        model_file = next(p for p in broken.iterdir() if p.suffix == ".onnx")
        model_file.write_bytes(b"not a model")
        request = LoadRequest("v3", "v3.zip", model_file, None, expected_sha256=None)
        with pytest.raises(ModelLoadError):
            await pool.prepare(request)
        assert (await ask(follower, "/model"))["version"] == "v2"  # nothing switched
        await pool.commit()  # nothing prepared is left to commit: a no-op, still v2
        assert (await ask(follower, "/model"))["version"] == "v2"


async def test_a_killed_follower_is_replaced_and_the_pool_stops_its_processes(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    async with leader(model_root) as (_, pool):
        (first,) = await asyncio.wait_for(pool.wait_ready(1), TIMEOUT)
        os.kill(first.process.pid, signal.SIGKILL)
        await asyncio.wait_for(first.channel.closed.wait(), TIMEOUT)
        assert pool.ready == [] and pool.next_worker() is None  # the leader takes every connection meanwhile
        (second,) = await asyncio.wait_for(pool.wait_ready(1), TIMEOUT)
        assert second.process.pid != first.process.pid  # a dead follower is never ready
        assert (await ask(second, "/model"))["version"] == "v1"
    assert second.process.returncode is not None  # stopped with the pool


async def test_a_follower_tells_the_leader_of_its_failing_model_and_forwards_reloads(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    """The follower's half (`FollowerLink`) against the leader's (`WorkerPool.answer`) over a real
    socket pair: a model failing its requests in the follower reaches the leader's refused listeners
    (then edgeHub), and a reload asked in the follower swaps through the leader."""
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    settings = InferenceSettings(model_root=model_root, edgehub=False, workers=1)
    leader_slot, follower_slot = ModelSlot(), ModelSlot()
    leader_service = ModelService(settings, leader_slot, Metrics(), default_registry())
    follower_service = ModelService(settings, follower_slot, Metrics(), default_registry())
    pool = WorkerPool(settings)
    await pool.start(leader_service, leader_slot)  # workers=1: no processes, only the answers
    told: list[tuple[str, str]] = []

    async def refused(version: str, exc: InferenceError) -> None:
        told.append((version, exc.code))

    leader_service.add_refused_listener(refused)
    ours, theirs = socket.socketpair()
    leader_end = Channel(ours, pool.answer, name="follower")
    link = FollowerLink(theirs)
    await leader_end.start()
    await link.start(follower_service, follower_slot, settings.load_timeout_seconds, workers=2)
    try:
        await link.refused("v1", FailingModelError("the model failed 5 requests in a row"))
        assert told == [("v1", "failing_requests")]
        # A reload asked in the follower: the leader swaps (it has no peers here, so the follower's own
        # slot stays empty and the follower says so instead of answering with a model it does not serve).
        with pytest.raises(WorkerFailedError, match="serves no model"):
            await follower_service.load_current("reload")
        assert leader_slot.current is not None and leader_slot.current.identity.version == "v1"
        (model_root / "current").unlink()
        with pytest.raises(NoCurrentModelError):  # the leader's refusal comes back as its own class
            await follower_service.load_current("reload")
    finally:
        await link.stop()
        await leader_end.close()
        await pool.stop()
        leader_slot.close()
        follower_slot.close()


async def test_a_follower_that_cannot_be_started_or_supervised_is_tried_again(
    model_root: Path, catalog: FixtureCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of processes at the first spawn (`Popen` fails), then an unexpected error while the second
    follower joins: each time the slot is started again, and a third follower serves."""
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    real_popen, real_of = subprocess.Popen, WireLoadRequest.of
    spawns: list[int] = []
    joins: list[int] = []

    def flaky_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        spawns.append(1)
        if len(spawns) == 1:
            raise OSError(11, "Resource temporarily unavailable")
        return real_popen(*args, **kwargs)

    def flaky_of(request: LoadRequest) -> WireLoadRequest:
        joins.append(1)
        if len(joins) == 2:  # the first is the leader's own start-up swap, before any follower
            raise RuntimeError("unexpected")
        return real_of(request)

    monkeypatch.setattr(subprocess, "Popen", flaky_popen)
    monkeypatch.setattr(WireLoadRequest, "of", staticmethod(flaky_of))
    async with leader(model_root) as (_, pool):
        (follower,) = await asyncio.wait_for(pool.wait_ready(1), TIMEOUT)
        assert (len(spawns), len(joins)) == (3, 3)
        assert (await ask(follower, "/model"))["version"] == "v1"
