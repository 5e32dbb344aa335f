"""Accepted connections handed between processes, and a uvicorn server that serves handed connections.

Processes sharing a listening socket (or `SO_REUSEPORT`) split connections as the kernel wakes them or
hashes them: four keep-alive clients on two workers landed 3:1 or 4:0 as often as 2:2, and the busy
worker then ran at the speed of one. So the leader accepts every connection and hands each to the next
worker in turn over a `SOCK_SEQPACKET` socket pair (one descriptor per message, `SCM_RIGHTS`); a
connection stays with its worker for its keep-alive life.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Callable
from typing import Protocol

import uvicorn

logger = logging.getLogger(__name__)

ProtocolFactory = Callable[[], asyncio.Protocol]
#: Descriptors taken per wake-up of the follower's reader, so a burst cannot hold its loop.
_BURST = 64


class Listening(Protocol):
    """What uvicorn's shutdown needs of a server: stop taking connections, then wait until stopped."""

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class ConnectionSource(Protocol):
    async def start(self, create_protocol: ProtocolFactory) -> Listening:
        """Begin serving connections with `create_protocol`'s protocol (after the app started)."""


class HandedServer(uvicorn.Server):
    """uvicorn, with connections coming from `source` instead of a socket it listens on itself."""

    def __init__(self, config: uvicorn.Config, source: ConnectionSource) -> None:
        super().__init__(config)
        self._source = source

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        del sockets  # connections come from the source
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(3)  # uvicorn's STARTUP_FAILURE
        config = self.config

        def create_protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        self.servers = [await self._source.start(create_protocol)]  # type: ignore[list-item]
        self.started = True


def hand(channel: socket.socket, connection: socket.socket) -> bool:
    """Send `connection` down `channel` (non-blocking); False when the receiver cannot take it now."""
    try:
        socket.send_fds(channel, [b"c"], [connection.fileno()])
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return False  # the receiver is gone; its monitor restarts it
    return True


async def adopt(create_protocol: ProtocolFactory, connection: socket.socket) -> None:
    """Serve an accepted `connection` on this loop with uvicorn's protocol."""
    loop = asyncio.get_running_loop()
    try:
        await loop.connect_accepted_socket(create_protocol, connection)
    except OSError:
        connection.close()  # the client left before it was adopted


class Adopting:
    """Background `adopt` tasks, kept referenced until done."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, create_protocol: ProtocolFactory, connection: socket.socket) -> None:
        task = asyncio.get_running_loop().create_task(adopt(create_protocol, connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class HandedConnections:
    """A follower's source: the connections the leader hands down `channel`; `on_leader_gone` runs
    when the leader closes it (the follower then shuts down)."""

    def __init__(self, channel: socket.socket, on_leader_gone: Callable[[], None]) -> None:
        self._channel = channel
        self._on_leader_gone = on_leader_gone
        self._adopting = Adopting()
        self._create_protocol: ProtocolFactory | None = None
        self._stopped = asyncio.Event()

    async def start(self, create_protocol: ProtocolFactory) -> Listening:
        self._create_protocol = create_protocol
        self._channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self._channel.fileno(), self._readable)
        return self

    def _readable(self) -> None:
        assert self._create_protocol is not None
        for _ in range(_BURST):
            try:
                data, fds, _flags, _address = socket.recv_fds(self._channel, 16, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.error("the connection hand-off channel broke", extra={"error": str(exc)})
                data, fds = b"", []
            for fd in fds:
                self._adopting.add(self._create_protocol, socket.socket(fileno=fd))
            if not data and not fds:
                self.close()
                self._on_leader_gone()
                return

    def close(self) -> None:
        if not self._stopped.is_set():
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._channel.fileno())
            self._channel.close()
            self._stopped.set()

    async def wait_closed(self) -> None:
        await self._stopped.wait()
