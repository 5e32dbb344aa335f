"""`INFERENCE_WORKERS=2` as real processes: connections handed out in turn, one model everywhere, a
reload from any worker swapping all, metrics summed once, and followers that die or hang replaced."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_tools.fixtures import FixtureCatalog
from inference_module.settings import InferenceSettings
from inference_module.workers.leader import run_leader
from tests.inference.helpers import install_model, module_env

pytestmark = pytest.mark.integration
TIMEOUT = 60.0
Record = dict[str, Any]


@dataclass
class Module:
    """The leader's process and every JSON record it and its followers logged (they share stderr)."""

    process: asyncio.subprocess.Process
    records: list[Record] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    port: int = 0

    async def read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a library's plain warning
            async with self.arrived:
                self.records.append(record)
                self.arrived.notify_all()

    async def wait_for(self, match: Callable[[Record], bool], *, after: int = 0) -> Record:
        """The first record from index `after` on that `match`es (waiting up to TIMEOUT)."""
        async with asyncio.timeout(TIMEOUT), self.arrived:
            while True:
                found = next((r for r in self.records[after:] if match(r)), None)
                if found is not None:
                    return found
                if self.process.returncode is not None:
                    raise AssertionError(f"the module exited with {self.process.returncode}")
                await self.arrived.wait()

    async def follower_pid(self, *, after: int = 0) -> int:
        joined = await self.wait_for(lambda r: r.get("msg") == "worker joined", after=after)
        started = [r for r in self.records if r.get("msg") == "worker process started"]
        assert joined["worker"] == 1 and started
        return int(started[-1]["pid"])

    def client(self) -> httpx.AsyncClient:
        """One keep-alive connection (opened on first use): the leader hands it to one worker."""
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}", limits=httpx.Limits(max_connections=1), timeout=TIMEOUT
        )


@asynccontextmanager
async def workers_module(root: Path, **env: str) -> AsyncIterator[Module]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "inference_module",
        env=module_env(root, INFERENCE_WORKERS="2", INFERENCE_PIPELINE_THREADS="1", **env),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    module = Module(process)
    reader = asyncio.create_task(module.read())
    follower = None
    try:
        started = await module.wait_for(lambda r: r.get("msg") == "serving with 2 worker processes")
        module.port = int(started["port"])
        follower = await module.follower_pid()
        yield module
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
        await asyncio.wait_for(reader, TIMEOUT)
    assert process.returncode in (0, -signal.SIGTERM)
    last = [int(r["pid"]) for r in module.records if r.get("msg") == "worker process started"]
    for pid in last:
        assert not _alive(pid), f"follower {pid} outlived its leader"
    assert follower is not None


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has ended; only its parent's reaper is missing


def served_by(module: Module, path: str) -> list[int]:
    """The worker of each logged request to `path`: 0 for the leader (its records carry no `worker`)."""
    return [int(r.get("worker", 0)) for r in module.records if r.get("path") == path]


async def test_connections_take_turns_and_a_reload_anywhere_swaps_every_worker(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    image = catalog.path(catalog.image("one-square-jpeg").file).read_bytes()
    async with workers_module(model_root) as module:
        clients = [module.client() for _ in range(4)]
        try:
            for client in clients:  # connections opened one after the other: handed out in turn
                for _ in range(2):
                    answer = await client.post(
                        "/score", content=image, headers={"content-type": "image/jpeg"}
                    )
                    assert answer.status_code == 200 and answer.json()["model"]["version"] == "v1"
            await module.wait_for(lambda r: r.get("path") == "/score" and r.get("worker") == 1)
            assert sorted(set(served_by(module, "/score"))) == [0, 1]
            assert sorted(served_by(module, "/score")) == [0, 0, 0, 0, 1, 1, 1, 1]

            install_model(model_root, catalog, "tiny-yolo-2", version="v2")
            for index, client in enumerate(clients):  # every connection: each worker asks once or more
                reload = await client.post("/model/reload")
                assert reload.status_code == 200, reload.text
                assert reload.json()["version"] == "v2"
                for other in clients:
                    assert (await other.get("/model")).json()["version"] == "v2", index
            await module.wait_for(lambda r: r.get("path") == "/model/reload" and r.get("worker") == 1)
            assert sorted(set(served_by(module, "/model/reload"))) == [0, 1]

            metrics = (await clients[0].get("/metrics")).text
            samples = dict(
                line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#")
            )
            # Summed over both processes, each counted once: 8 scores, 4 reloads (not one per worker).
            assert (
                float(samples['inference_requests_total{model_version="v1",route="/score",status="200"}'])
                == 8
            )
            assert float(samples['inference_model_swaps_total{source="reload"}']) == 4
            assert float(samples['inference_active_model_info{runtime="onnx",version="v2"}']) == 1
            assert float(samples['inference_active_model_info{runtime="onnx",version="v1"}']) == 0
        finally:
            for client in clients:
                await client.aclose()


async def test_a_follower_that_dies_is_started_again_with_the_serving_model(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    async with workers_module(model_root) as module:
        first = await module.follower_pid()
        mark = len(module.records)
        os.kill(first, signal.SIGKILL)
        ended = await module.wait_for(
            lambda r: r.get("msg") == "worker process ended; starting it again", after=mark
        )
        assert ended["exit_code"] == -signal.SIGKILL
        async with module.client() as alone:  # meanwhile the leader serves every connection
            assert (await alone.get("/model")).json()["version"] == "v1"
        install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
        second = await module.follower_pid(after=mark)
        assert second != first
        clients = [module.client() for _ in range(2)]
        try:
            for client in clients:  # the new follower serves what the leader serves, not what it finds
                assert (await client.get("/model")).json()["version"] == "v1"
            (model_root / "current").write_text("v2\n")
            assert (await clients[0].post("/model/reload")).json()["version"] == "v2"
            for client in clients:
                assert (await client.get("/model")).json()["version"] == "v2"
            assert sorted(served_by(module, "/model")[-2:]) == [0, 1]
        finally:
            for client in clients:
                await client.aclose()


async def test_a_follower_that_stops_answering_is_left_out_of_the_swap_and_replaced(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    """A hung follower is not the model's fault: the swap goes on without it (a refusal would make the
    loader roll a good version back), and its replacement joins with the new model."""
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    async with workers_module(model_root, INFERENCE_LOAD_TIMEOUT_SECONDS="1") as module:
        hung = await module.follower_pid()
        to_follower, to_leader = module.client(), module.client()
        try:
            assert (await to_follower.get("/health/live")).status_code == 200  # the first goes to worker 1
            assert (await to_leader.get("/health/live")).status_code == 200
            assert served_by(module, "/health/live")[-2:] in ([1, 0], [0, 1])
            mark = len(module.records)
            os.kill(hung, signal.SIGSTOP)
            install_model(model_root, catalog, "tiny-yolo-2", version="v2")
            swapped = await to_leader.post("/model/reload")
            assert swapped.status_code == 200 and swapped.json()["version"] == "v2", swapped.text
            replacement = await module.follower_pid(after=mark)
            assert replacement != hung and not _alive(hung)
            async with module.client() as a, module.client() as b:
                for client in (a, b):
                    assert (await client.get("/model")).json()["version"] == "v2"
                assert sorted(served_by(module, "/model")[-2:]) == [0, 1]
        finally:
            await to_follower.aclose()
            await to_leader.aclose()


async def test_handed_connections_keep_the_servers_limits(model_root: Path, catalog: FixtureCatalog) -> None:
    """A connection handed to either worker still gets the guarded protocol: headers that never end are
    answered 408 and closed, on the leader's share and the follower's alike."""
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    async with workers_module(model_root, INFERENCE_HEADER_TIMEOUT_SECONDS="0.5") as module:
        mark = len(module.records)
        answers = []
        for _ in range(2):  # two connections in turn: one per worker
            reader, writer = await asyncio.open_connection("127.0.0.1", module.port)
            writer.write(b"POST /score HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
            await writer.drain()
            answers.append(await asyncio.wait_for(reader.read(), TIMEOUT))
            writer.close()
        assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), answers
        refused = [r for r in module.records[mark:] if str(r.get("msg", "")).startswith("connection refused")]
        assert sorted(int(r.get("worker", 0)) for r in refused) == [0, 1]


async def test_swaps_across_workers_under_load_fail_no_request(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    """Four clients (two per worker) post without pause while the model is swapped back and forth through
    reloads on either worker: every answer is a 200, both versions answered, both workers served."""
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    image = catalog.path(catalog.image("one-square-jpeg").file).read_bytes()
    async with workers_module(model_root) as module:
        clients = [module.client() for _ in range(4)]
        statuses: list[int] = []
        versions: set[str] = set()
        done = asyncio.Event()

        async def post(client: httpx.AsyncClient) -> None:
            for _ in range(2000):  # bounded; ends when the swaps are done
                if done.is_set():
                    return
                answer = await client.post("/score", content=image, headers={"content-type": "image/jpeg"})
                statuses.append(answer.status_code)
                if answer.status_code == 200:
                    versions.add(answer.json()["model"]["version"])

        reloaders = [module.client() for _ in range(2)]
        try:
            for client in [*clients, *reloaders]:
                assert (await client.get("/health/ready")).status_code == 200  # connections in turn
            load = [asyncio.create_task(post(client)) for client in clients]
            for swap in range(6):
                version = ("v2", "v1")[swap % 2]
                (model_root / "current").write_text(version + "\n")
                reload = await reloaders[swap % 2].post("/model/reload")  # follower and leader in turn
                assert reload.status_code == 200 and reload.json()["version"] == version, reload.text
            done.set()
            await asyncio.wait_for(asyncio.gather(*load), TIMEOUT)
            assert statuses and set(statuses) == {200}, sorted(set(statuses))
            assert versions == {"v1", "v2"}
            assert sorted(set(served_by(module, "/score"))) == [0, 1]
            assert sorted(served_by(module, "/model/reload")) == [0, 0, 0, 1, 1, 1]
        finally:
            for client in [*clients, *reloaders]:
                await client.aclose()


async def test_a_hung_follower_is_found_by_its_pings_and_replaced(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    async with workers_module(model_root, INFERENCE_WORKER_PING_SECONDS="0.5") as module:
        hung = await module.follower_pid()
        mark = len(module.records)
        os.kill(hung, signal.SIGSTOP)
        stopped = await module.wait_for(
            lambda r: str(r.get("msg", "")).startswith("worker stopped"), after=mark
        )
        assert "ping" in stopped["msg"]
        replacement = await module.follower_pid(after=mark)
        assert replacement != hung and not _alive(hung)
        async with module.client() as a, module.client() as b:
            for client in (a, b):
                assert (await client.get("/model")).json()["version"] == "v1"
        assert sorted(served_by(module, "/model")[-2:]) == [0, 1]


def test_several_workers_without_a_writable_temporary_directory_stop_with_a_clear_error(
    model_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_room(prefix: str) -> str:
        raise OSError(28, f"No space left on device for {prefix}")

    monkeypatch.setattr(tempfile, "mkdtemp", no_room)
    settings = InferenceSettings(model_root=model_root, edgehub=False, workers=2)
    assert run_leader(settings) == 1
    assert "writable temporary directory" in caplog.text and "No space left" in caplog.text
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
