"""The leader-follower channel: requests both ways, answered by id; a broken peer fails waiting calls."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from inference_module.announcement import LoadRequest
from inference_module.workers.channel import MAX_LINE, Channel, ChannelClosedError
from inference_module.workers.messages import (
    ENVELOPE,
    Abort,
    Envelope,
    Prepare,
    Reload,
    Reply,
    Request,
    WireLoadRequest,
)


async def agree(_: Request) -> Reply:
    return Reply(ok=True)


async def test_both_sides_ask_and_answer_at_once() -> None:
    left_sock, right_sock = socket.socketpair()
    reload_seen = asyncio.Event()

    async def leader(request: Request) -> Reply:
        assert isinstance(request, Reload)
        reload_seen.set()
        # While the follower waits for this reply, the leader asks the follower something.
        reply = await left.call(Abort(), 5)
        return Reply(ok=reply.ok, version="v2")

    async def follower(request: Request) -> Reply:
        assert isinstance(request, Abort)
        return Reply(ok=True)

    left = Channel(left_sock, leader, name="follower")
    right = Channel(right_sock, follower, name="leader")
    await left.start()
    await right.start()
    try:
        reply = await right.call(Reload(), 5)
        assert reply.ok and reply.version == "v2" and reload_seen.is_set()
    finally:
        await left.close()
        await right.close()


@pytest.mark.parametrize(
    "garbage", [b'{"id": 1, "request": {"op": "explode"}}\n', b"x" * (MAX_LINE + 10) + b"\n"]
)
async def test_garbage_from_the_peer_ends_the_channel_and_fails_waiting_calls(garbage: bytes) -> None:
    ours, theirs = socket.socketpair()
    channel = Channel(ours, agree, name="follower")
    await channel.start()
    try:
        waiting = asyncio.ensure_future(channel.call(Abort(), 30))
        await asyncio.sleep(0)
        await asyncio.to_thread(theirs.sendall, garbage)
        with pytest.raises(ChannelClosedError):
            await asyncio.wait_for(waiting, 10)
        assert channel.closed.is_set()
        with pytest.raises(ChannelClosedError):
            await channel.call(Abort(), 1)
    finally:
        theirs.close()
        await channel.close()


async def test_a_peer_that_never_answers_times_out() -> None:
    ours, theirs = socket.socketpair()
    channel = Channel(ours, agree, name="follower")
    await channel.start()
    try:
        with pytest.raises(TimeoutError):
            await channel.call(Abort(), 0.2)
    finally:
        theirs.close()
        await channel.close()


def test_a_load_request_crosses_with_its_empty_fields() -> None:
    """Embedded labels (no label file) and a reference loader's message (no SHA-256) leave fields empty:
    a follower must read them back, not refuse the line."""
    request = LoadRequest("v1", "v1.zip", Path("/models/models/v1/m.onnx"), None, expected_sha256=None)
    line = Envelope(id=3, request=Prepare(load=WireLoadRequest.of(request))).model_dump_json(
        exclude_none=True
    )
    parsed = ENVELOPE.validate_json(line)
    assert isinstance(parsed.request, Prepare) and parsed.request.load.request() == request
