"""Requests both ways over one Unix stream socket, one JSON `Envelope` per line, answered by id.

Each side may ask and answer at once (the leader asks a follower to prepare while that follower asks
the leader for a reload), so replies are matched to their request by id and requests are handled in
their own tasks. Lines are bounded; a peer that closes or sends garbage ends the channel, and every call
still waiting fails with `ChannelClosedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from inference_module.workers.messages import ENVELOPE, Envelope, Reply, Request

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Reply]]
#: Time allowed for an answer beyond the work asked for (a build's own bound is the load timeout), and
#: for answers that need no work at all (commit, abort).
ANSWER_SLACK_SECONDS = 10.0
#: Longest line either side sends: a `Prepare` with two paths is well under 4 KiB.
MAX_LINE = 64 * 1024


class ChannelClosedError(ConnectionError):
    """The other process closed the channel (or broke it) before answering."""


class Channel:
    """One end of a leader-follower channel; `start` reads until the peer closes."""

    def __init__(self, sock: socket.socket, handler: Handler, *, name: str) -> None:
        self._sock = sock
        self._handler = handler
        self._name = name
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._handling: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()

    async def start(self) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=self._sock, limit=MAX_LINE)
        self._reader_task = asyncio.create_task(self._read(reader), name=f"channel-{self._name}")

    async def call(self, request: Request, within: float) -> Reply:
        """Send `request` and wait up to `within` s for its reply (`TimeoutError` past it)."""
        if self._writer is None or self.closed.is_set():
            raise ChannelClosedError(f"the channel to {self._name} is closed")
        ident = next(self._ids)
        waiting = asyncio.get_running_loop().create_future()
        self._waiting[ident] = waiting
        try:
            await self._send(Envelope(id=ident, request=request))
            return await asyncio.wait_for(waiting, within)
        finally:
            self._waiting.pop(ident, None)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        for task in list(self._handling):
            task.cancel()
        self._ended()

    async def _send(self, envelope: Envelope) -> None:
        if self._writer is None:
            raise ChannelClosedError(f"the channel to {self._name} is closed")
        try:
            self._writer.write(envelope.model_dump_json(exclude_none=True).encode() + b"\n")
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:  # RuntimeError: the transport is already closing
            self._ended()
            raise ChannelClosedError(f"the channel to {self._name} broke: {exc}") from exc

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    envelope = ENVELOPE.validate_json(line)
                except ValidationError as exc:
                    logger.error(
                        "garbage on the worker channel; closing it",
                        extra={"peer": self._name, "error": str(exc)[:200]},
                    )
                    break
                self._dispatch(envelope)
        except (OSError, ValueError) as exc:  # ValueError: a line over MAX_LINE
            logger.error("worker channel broke", extra={"peer": self._name, "error": str(exc)[:200]})
        finally:
            self._ended()

    def _dispatch(self, envelope: Envelope) -> None:
        if envelope.reply is not None:
            waiting = self._waiting.get(envelope.id)
            if waiting is not None and not waiting.done():
                waiting.set_result(envelope.reply)
            return
        if envelope.request is not None:
            task = asyncio.create_task(self._answer(envelope.id, envelope.request))
            self._handling.add(task)
            task.add_done_callback(self._handling.discard)

    async def _answer(self, ident: int, request: Request) -> None:
        try:
            reply = await self._handler(request)
        except Exception as exc:
            logger.exception("worker request failed", extra={"peer": self._name, "op": request.op})
            reply = Reply(ok=False, code="internal_error", message=f"{type(exc).__name__}")
        with contextlib.suppress(ChannelClosedError):
            await self._send(Envelope(id=ident, reply=reply))

    def _ended(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(ChannelClosedError(f"{self._name} closed the channel"))
