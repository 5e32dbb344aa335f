"""The download connection's receive buffer and write flow control, driven by hand (pure logic).

`test_streams.py` runs the same code over real sockets and TLS; these provoke the orderings a real
peer cannot be made to produce on demand: bytes then an error, a transport that delivers after it
was paused, a write that waits for the transport to drain.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loader_module.streams import _Connection


class _Transport(asyncio.Transport):
    """Records what the protocol asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.pauses = 0
        self.written: list[bytes] = []
        self.closing = False

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.closing = True


def _connected(capacity: int = 1024) -> tuple[_Connection, _Transport]:
    connection, transport = _Connection(capacity), _Transport()
    connection.connection_made(transport)
    return connection, transport


def _deliver(connection: _Connection, data: bytes) -> None:
    """What a transport does with received bytes: fill the lent buffer, then say how much."""
    while data:
        buffer = connection.get_buffer(len(data))
        assert len(buffer) > 0
        count = min(len(buffer), len(data))
        buffer[:count] = data[:count]
        connection.buffer_updated(count)
        data = data[count:]


async def test_one_read_takes_everything_received_so_far() -> None:
    connection, _ = _connected()
    _deliver(connection, b"abc")
    _deliver(connection, b"defg")
    assert await connection.receive() == b"abcdefg"


async def test_a_read_waits_for_bytes() -> None:
    connection, _ = _connected()
    read = asyncio.ensure_future(connection.receive())
    await asyncio.sleep(0)
    assert not read.done()
    _deliver(connection, b"late")
    assert await asyncio.wait_for(read, 5) == b"late"


async def test_reading_pauses_when_the_buffer_fills_and_resumes_once_read() -> None:
    connection, transport = _connected(capacity=1024)
    _deliver(connection, bytes(700))
    assert transport.pauses == 0
    _deliver(connection, bytes(100))  # past three quarters
    assert (transport.pauses, transport.paused) == (1, True)
    assert len(await connection.receive()) == 800
    assert not transport.paused


async def test_bytes_delivered_after_a_pause_are_kept_in_a_larger_buffer() -> None:
    connection, transport = _connected(capacity=1024)
    data = bytes(range(256)) * 12  # 3 KiB: three times the buffer, as a transport ignoring the pause
    _deliver(connection, data)
    assert transport.pauses == 1
    assert await connection.receive() == data


async def test_bytes_before_a_lost_connection_are_read_before_its_error() -> None:
    connection, _ = _connected()
    _deliver(connection, b"prefix")
    connection.connection_lost(ConnectionResetError("reset by peer"))
    assert await connection.receive() == b"prefix"
    with pytest.raises(ConnectionResetError, match="reset by peer"):
        await connection.receive()


async def test_a_clean_end_reads_empty_and_marks_the_connection_readable() -> None:
    connection, _ = _connected()
    assert not connection.readable()
    connection.eof_received()
    assert connection.readable(), "an idle connection the server ended must not be reused"
    assert await connection.receive() == b""
    assert await connection.receive() == b""


async def test_a_waiting_read_wakes_on_a_lost_connection() -> None:
    connection, _ = _connected()
    read = asyncio.ensure_future(connection.receive())
    await asyncio.sleep(0)
    connection.connection_lost(OSError("network unreachable"))
    with pytest.raises(OSError, match="network unreachable"):
        await asyncio.wait_for(read, 5)


async def test_a_write_waits_while_the_transport_is_paused() -> None:
    connection, _ = _connected()
    connection.pause_writing()
    drained = asyncio.ensure_future(connection.drain())
    await asyncio.sleep(0)
    assert not drained.done()
    connection.resume_writing()
    await asyncio.wait_for(drained, 5)


async def test_a_write_waiting_for_a_lost_connection_fails() -> None:
    connection, _ = _connected()
    connection.pause_writing()
    drained = asyncio.ensure_future(connection.drain())
    await asyncio.sleep(0)
    connection.connection_lost(None)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(drained, 5)
