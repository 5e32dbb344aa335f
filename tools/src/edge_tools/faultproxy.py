"""A loopback TCP proxy that injects network faults (azurite.md §6): cut, reset, stall, throttle.

It forwards raw bytes (TLS passes through untouched), so a SAS URL pointed at the proxy's port still
verifies. Each accepted connection takes the next `Policy` from the list; the last one repeats, so
`[Policy(cut_after=N), Policy()]` faults only the first attempt. Byte counts cover what was sent to
clients (headers included): tests bound the bytes a resumed download fetched with them.

The proxy runs its own event loop in a thread so that sync and async tests can both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

CHUNK = 64 * 1024


@dataclass(frozen=True)
class Policy:
    """What happens to the downstream (server → client) direction of one connection."""

    #: Close the client connection (FIN) after this many bytes.
    cut_after: int | None = None
    #: Abort the client connection with RST after this many bytes.
    reset_after: int | None = None
    #: Stop forwarding after this many bytes but keep the connection open.
    stall_after: int | None = None
    #: Forward at most this many bytes per second.
    throttle_bps: float | None = None

    @property
    def limit(self) -> int | None:
        for value in (self.cut_after, self.reset_after, self.stall_after):
            if value is not None:
                return value
        return None


class FaultProxy:
    """`with FaultProxy(upstream_port, [Policy(cut_after=4096), Policy()]) as proxy: ... proxy.port`."""

    def __init__(
        self, upstream_port: int, policies: Sequence[Policy] = (), *, upstream_host: str = "127.0.0.1"
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._policies: list[Policy] = list(policies) or [Policy()]
        self._next = 0
        self.port = 0
        self.connections = 0
        self.downstream_bytes = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def set_policies(self, policies: Sequence[Policy]) -> None:
        """Policies for the connections accepted from now on (the count starts again)."""
        with self._lock:
            self._policies = list(policies) or [Policy()]
            self._next = 0

    def reset_counters(self) -> None:
        with self._lock:
            self.connections = 0
            self.downstream_bytes = 0

    def _take_policy(self) -> Policy:
        with self._lock:
            index = min(self._next, len(self._policies) - 1)
            self._next += 1
            self.connections += 1
            return self._policies[index]

    def _count(self, sent: int) -> None:
        with self._lock:
            self.downstream_bytes += sent

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> int:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("fault proxy did not start")
        if self._error is not None:
            raise RuntimeError("fault proxy failed to start") from self._error
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to `start`, which re-raises it in the caller's thread
            self._error = exc
            self._started.set()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        writers: set[asyncio.StreamWriter] = set()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # A plain callback runs inside connection_made, so every writer is known before any task
            # can be cancelled: all of them are closed at shutdown (no "unclosed transport" warnings).
            writers.add(writer)
            task = loop.create_task(self._handle(reader, writer, self._take_policy(), writers))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in writers:
                writer.close()
            await server.wait_closed()
            await asyncio.sleep(0)  # let the transports finish closing before the loop does

    # --- one connection ----------------------------------------------------------------------------
    async def _handle(
        self,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        policy: Policy,
        writers: set[asyncio.StreamWriter],
    ) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        writers.add(upstream_w)
        up = asyncio.create_task(self._pump_up(client_r, upstream_w))
        try:
            await self._pump_down(upstream_r, client_w, policy, up)
        finally:
            up.cancel()
            await asyncio.gather(up, return_exceptions=True)
            for writer in (upstream_w, client_w):
                writer.close()
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await writer.wait_closed()

    @staticmethod
    async def _pump_up(client_r: asyncio.StreamReader, upstream_w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await client_r.read(CHUNK):
                upstream_w.write(data)
                await upstream_w.drain()
            if upstream_w.can_write_eof():
                upstream_w.write_eof()

    async def _pump_down(
        self,
        upstream_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        policy: Policy,
        up: asyncio.Task[None],
    ) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = 0
        limit = policy.limit
        read_size = CHUNK
        if policy.throttle_bps:
            read_size = max(1024, min(CHUNK, int(policy.throttle_bps / 20)))
        try:
            while True:
                want = read_size if limit is None else min(read_size, limit - sent)
                if want <= 0:
                    break
                data = await upstream_r.read(want)
                if not data:
                    return
                client_w.write(data)
                await client_w.drain()
                sent += len(data)
                self._count(len(data))
                if policy.throttle_bps:
                    # Sleep until the average rate is back at the target (per-chunk sleeps undershoot).
                    delay = started + sent / policy.throttle_bps - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
        except OSError:
            return
        if policy.reset_after is not None:
            sock = client_w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client_w.transport.abort()
        elif policy.stall_after is not None:
            assert self._stop is not None
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({stop, up}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
