"""The leader's side: starting the followers, handing out connections, and swapping all workers at once.

A swap is prepared in every ready follower in turn (each builds and warms the model beside its serving
one; the leader's memory check already counted a copy per worker), and only when all succeeded does any
switch: the leader, then each follower. A follower that fails to prepare makes the swap fail with its
error (the others drop what they built); one that ends or stops answering is left out of the swap
(not the model's fault), stopped, and started again. A follower (re)joining copies the serving model
under the swap lock before it gets a connection, so a connection never reaches a worker serving another
model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from inference_module.announcement import LoadRequest
from inference_module.errors import ModelError
from inference_module.service import ModelService
from inference_module.settings import InferenceSettings
from inference_module.slot import ModelSlot
from inference_module.workers.channel import ANSWER_SLACK_SECONDS, Channel, ChannelClosedError
from inference_module.workers.handoff import Adopting, Listening, ProtocolFactory, hand
from inference_module.workers.messages import (
    Abort,
    Commit,
    Ping,
    Prepare,
    Refused,
    Reload,
    Reply,
    Request,
    WireLoadRequest,
    model_error,
)

logger = logging.getLogger(__name__)

#: Allowance on top of the load timeout for a follower's process start (imports, runtimes, app).
_START_SECONDS = 60.0
_RESTART_INITIAL = 1.0
_RESTART_MAX = 30.0
#: A follower that stayed up this long starts again after `_RESTART_INITIAL` when it next ends.
_STABLE_SECONDS = 60.0
_STOP_SECONDS = 15.0


@dataclass(slots=True)
class Follower:
    index: int
    process: subprocess.Popen[bytes]
    channel: Channel
    handoff: socket.socket
    started: float = field(default_factory=time.monotonic)
    ready: bool = False


class WorkerPool:
    """The followers of one leader (`INFERENCE_WORKERS` - 1 processes); implements the service's `Peers`."""

    def __init__(self, settings: InferenceSettings, *, metrics_dir: Path | None = None) -> None:
        self._settings = settings
        self._metrics_dir = metrics_dir
        self._followers: dict[int, Follower] = {}
        self._service: ModelService | None = None
        self._slot: ModelSlot | None = None
        self._prepared: list[Follower] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._turn = 0
        self._joined = asyncio.Condition()

    # --- Peers -----------------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return self._settings.workers - 1

    async def prepare(self, request: LoadRequest) -> None:
        load = WireLoadRequest.of(request)
        within = self._settings.load_timeout_seconds + ANSWER_SLACK_SECONDS
        self._prepared = []
        for follower in self.ready:
            try:
                reply = await follower.channel.call(Prepare(load=load), within)
            except (ChannelClosedError, TimeoutError) as exc:
                # Not the model's fault: the swap goes on without it. Out of the rotation now, it is
                # started again and rejoins (under the swap lock) with whatever then serves.
                self._fail(follower, f"did not prepare: {type(exc).__name__}")
                continue
            if not reply.ok:
                await self.abort()
                raise reply.error()
            self._prepared.append(follower)

    async def commit(self) -> None:
        prepared, self._prepared = self._prepared, []
        for follower in prepared:
            reply = await self._quick(follower, Commit())
            if reply is None or not reply.ok:
                # It serves the old model or none: it must not get connections until it rejoins.
                self._fail(follower, "did not commit")

    async def abort(self) -> None:
        prepared, self._prepared = self._prepared, []
        for follower in prepared:
            if await self._quick(follower, Abort()) is None:
                self._fail(follower, "did not abort")

    async def _quick(self, follower: Follower, request: Request) -> Reply | None:
        try:
            return await follower.channel.call(request, ANSWER_SLACK_SECONDS)
        except (ChannelClosedError, TimeoutError):
            return None

    # --- life ------------------------------------------------------------------------------------------
    async def start(self, service: ModelService, slot: ModelSlot) -> None:
        """Start every follower; each joins (gets connections) once it serves what the leader serves."""
        self._service, self._slot = service, slot
        for index in range(1, self._settings.workers):
            self._spawn_later(index, 0.0)

    def stop_accepting(self) -> None:
        """The leader stops taking connections: no follower is started again, and each is told to
        drain now (its hand-off closes), beside the leader's own drain rather than after it."""
        self._stopping = True
        for follower in self._followers.values():
            follower.ready = False
            follower.handoff.close()

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        followers, self._followers = list(self._followers.values()), {}
        for follower in followers:
            follower.ready = False
            follower.handoff.close()  # the follower sees its leader gone and shuts down
            await follower.channel.close()
        await asyncio.gather(*(asyncio.to_thread(_stop_process, f.process) for f in followers))

    def next_worker(self) -> Follower | None:
        """The worker for the next connection, in turn: a ready follower, or None for the leader."""
        members: list[Follower | None] = [None, *self.ready]
        self._turn = (self._turn + 1) % len(members)
        return members[self._turn]

    def _spawn_later(self, index: int, delay: float) -> None:
        task = asyncio.create_task(self._run_follower(index, delay), name=f"worker-{index}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_follower(self, index: int, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            follower = self._spawn(index)
        except OSError:  # out of descriptors or processes: try again later
            logger.exception("worker process could not be started", extra={"worker": index})
            if not self._stopping:
                self._spawn_later(index, min(max(delay * 2, _RESTART_INITIAL), _RESTART_MAX))
            return
        self._followers[index] = follower
        try:
            await self._join(follower)
        except (ModelError, ChannelClosedError, TimeoutError) as exc:
            self._fail(follower, f"could not join: {type(exc).__name__} {exc}")
        except Exception:  # never leave a follower unsupervised
            logger.exception("worker supervision failed", extra={"worker": index})
            self._fail(follower, "supervision failed")
        else:
            await self._watch(follower)
        await follower.channel.closed.wait()
        follower.ready = False
        follower.handoff.close()
        await follower.channel.close()
        code = await asyncio.to_thread(_stop_process, follower.process)
        if self._followers.get(index) is follower:
            del self._followers[index]
        self._forget_metrics(follower.process.pid)
        if self._stopping:
            return
        up = time.monotonic() - follower.started
        again = (
            _RESTART_INITIAL if up >= _STABLE_SECONDS else min(max(delay * 2, _RESTART_INITIAL), _RESTART_MAX)
        )
        logger.error(
            "worker process ended; starting it again",
            extra={
                "worker": index,
                "exit_code": code,
                "up_seconds": round(up, 1),
                "restart_in_seconds": again,
            },
        )
        self._spawn_later(index, again)

    def _spawn(self, index: int) -> Follower:
        assert self._service is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        hand_ours, hand_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        if self._metrics_dir is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self._metrics_dir)
        command = [
            sys.executable, "-m", "inference_module.workers.follower", "--index", str(index),
            "--channel-fd", str(theirs.fileno()), "--handoff-fd", str(hand_theirs.fileno()),
        ]  # fmt: skip
        try:
            process = subprocess.Popen(
                command, env=env, pass_fds=(theirs.fileno(), hand_theirs.fileno()), start_new_session=True
            )  # its own session: a terminal's Ctrl-C reaches the leader, which stops it in order
        except OSError:
            ours.close()
            hand_ours.close()
            raise
        finally:
            theirs.close()
            hand_theirs.close()
        hand_ours.setblocking(False)
        channel = Channel(ours, self.answer, name=f"worker {index}")
        follower = Follower(index=index, process=process, channel=channel, handoff=hand_ours)
        logger.info("worker process started", extra={"worker": index, "pid": process.pid})
        return follower

    async def _join(self, follower: Follower) -> None:
        """Give `follower` the serving model (under the swap lock, so no swap runs meanwhile), then
        connections."""
        assert self._service is not None and self._slot is not None
        await follower.channel.start()
        # Its process start (imports, runtimes, app) is awaited here, outside the lock: swaps never
        # wait for a follower booting, or hanging at boot.
        await follower.channel.call(Ping(), _START_SECONDS)
        async with self._service.swap_lock:
            serving = self._slot.current
            reply = Reply(ok=True)
            if serving is not None:
                load = WireLoadRequest.of(serving.identity.load_request())
                within = self._settings.load_timeout_seconds + ANSWER_SLACK_SECONDS
                reply = await follower.channel.call(Prepare(load=load), within)
                if reply.ok:
                    reply = await follower.channel.call(Commit(), ANSWER_SLACK_SECONDS)
            if not reply.ok:
                raise reply.error()
            follower.ready = True
        logger.info("worker joined", extra={"worker": follower.index, "model_version": reply.version})
        async with self._joined:
            self._joined.notify_all()

    @property
    def ready(self) -> list[Follower]:
        """The followers getting connections now."""
        return [f for f in self._followers.values() if f.ready and not f.channel.closed.is_set()]

    async def wait_ready(self, count: int) -> list[Follower]:
        """Wait until `count` followers get connections (callers bound the wait with a timeout)."""
        async with self._joined:
            await self._joined.wait_for(lambda: len(self.ready) >= count)
        return self.ready

    async def _watch(self, follower: Follower) -> None:
        """Ping `follower` every `worker_ping_seconds`; one that does not answer within that time (its
        event loop hung, or it was stopped) is replaced, so its share of connections is not lost."""
        interval = self._settings.worker_ping_seconds
        while not follower.channel.closed.is_set():
            await asyncio.sleep(interval)
            try:
                await follower.channel.call(Ping(), 2 * interval)  # slack for a build holding the GIL
            except TimeoutError:
                self._fail(follower, f"no answer to a ping within {2 * interval:g} s")
                return
            except ChannelClosedError:
                return

    def _fail(self, follower: Follower, why: str) -> None:
        """Take `follower` out of the rotation and stop it; its task starts it again."""
        follower.ready = False
        logger.error("worker stopped: %s", why, extra={"worker": follower.index})
        with contextlib.suppress(ProcessLookupError):
            follower.process.kill()

    async def answer(self, request: Request) -> Reply:
        """A follower's request: a reload (swap every worker) or a model failing its requests."""
        assert self._service is not None
        if isinstance(request, Reload):
            try:
                # Shielded: if the asking follower dies meanwhile, its channel's tasks are cancelled,
                # and a swap cut between the leader's switch and the other followers' commits would be
                # half-applied.
                identity = await asyncio.shield(self._service.load_current("reload"))
            except ModelError as exc:
                return Reply.failed(exc)
            return Reply(ok=True, version=identity.version)
        if isinstance(request, Refused):
            refused = model_error(request.code, request.message)
            await asyncio.shield(self._service.tell_refused(request.version, refused))
            return Reply(ok=True)
        return Reply(ok=False, code="bad_request", message=f"a follower cannot ask for {request.op}")

    def _forget_metrics(self, pid: int) -> None:
        if self._metrics_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]


class LeaderConnections:
    """The leader's source: accepts on the module's port and hands connections out in turn."""

    def __init__(self, listener: socket.socket, pool: WorkerPool) -> None:
        self._listener = listener
        self._pool = pool
        self._adopting = Adopting()
        self._task: asyncio.Task[None] | None = None

    async def start(self, create_protocol: ProtocolFactory) -> Listening:
        self._listener.setblocking(False)
        self._task = asyncio.create_task(self._accept(create_protocol), name="accept")
        return self

    async def _accept(self, create_protocol: ProtocolFactory) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, _ = await loop.sock_accept(self._listener)
            except OSError as exc:  # out of descriptors, or the listener closed at shutdown
                logger.warning("accept failed", extra={"error": str(exc)})
                await asyncio.sleep(0.1)
                continue
            follower = self._pool.next_worker()
            if follower is not None and hand(follower.handoff, connection):
                connection.close()  # the follower holds its own descriptor now
            else:
                self._adopting.add(create_protocol, connection)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._listener.close()
        self._pool.stop_accepting()

    async def wait_closed(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _stop_process(process: subprocess.Popen[bytes]) -> int | None:
    """Wait for a follower told to stop (its channels closed); kill it past `_STOP_SECONDS`."""
    try:
        return process.wait(_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(_STOP_SECONDS)
