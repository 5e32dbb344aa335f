"""The fault proxy against a plain loopback TCP server: cut, reset, stall, throttle, policy order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from edge_tools.faultproxy import FaultProxy, Policy

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
async def upstream() -> AsyncIterator[int]:
    """Sends PAYLOAD to every client after it says anything, then closes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(PAYLOAD)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def _fetch(port: int, within: float = 10.0) -> tuple[bytes, type[BaseException] | None]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"x")
    await writer.drain()
    received = bytearray()
    error: type[BaseException] | None = None
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                received += chunk
    except (ConnectionError, TimeoutError) as exc:
        error = type(exc)
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError:
        pass
    return bytes(received), error


async def test_clean_policy_forwards_everything(upstream: int) -> None:
    with FaultProxy(upstream) as proxy:
        data, error = await _fetch(proxy.port)
    assert data == PAYLOAD and error is None
    assert proxy.downstream_bytes == len(PAYLOAD) and proxy.connections == 1


async def test_cut_closes_after_exactly_k_bytes_then_next_policy_applies(upstream: int) -> None:
    with FaultProxy(upstream, [Policy(cut_after=1000), Policy()]) as proxy:
        first, error = await _fetch(proxy.port)
        second, _ = await _fetch(proxy.port)
        third, _ = await _fetch(proxy.port)  # the last policy repeats
    assert first == PAYLOAD[:1000] and error is None  # FIN: a clean end of stream
    assert second == third == PAYLOAD
    assert proxy.connections == 3


async def test_reset_aborts_with_rst(upstream: int) -> None:
    with FaultProxy(upstream, [Policy(reset_after=300_000)]) as proxy:
        data, error = await _fetch(proxy.port)
    assert error is ConnectionResetError
    assert len(data) <= 300_000 and PAYLOAD.startswith(data)


async def test_stall_keeps_the_connection_open_without_data(upstream: int) -> None:
    with FaultProxy(upstream, [Policy(stall_after=5000)]) as proxy:
        data, error = await _fetch(proxy.port, within=0.5)
    assert data == PAYLOAD[:5000] and error is TimeoutError


async def test_throttle_limits_the_rate(upstream: int) -> None:
    rate = 4 * 1024 * 1024
    with FaultProxy(upstream, [Policy(throttle_bps=rate)]) as proxy:
        started = time.monotonic()
        data, _ = await _fetch(proxy.port)
        elapsed = time.monotonic() - started
    assert data == PAYLOAD
    assert elapsed >= 0.9 * len(PAYLOAD) / rate


async def test_set_policies_replaces_the_list_and_counters_reset(upstream: int) -> None:
    with FaultProxy(upstream, [Policy(cut_after=10)]) as proxy:
        assert (await _fetch(proxy.port))[0] == PAYLOAD[:10]
        proxy.set_policies([])
        proxy.reset_counters()
        assert (await _fetch(proxy.port))[0] == PAYLOAD
        assert proxy.connections == 1 and proxy.downstream_bytes == len(PAYLOAD)


async def test_unreachable_upstream_closes_the_client() -> None:
    sock_port = 1  # nothing listens on port 1 of loopback
    with FaultProxy(sock_port) as proxy:
        data, _ = await _fetch(proxy.port)
    assert data == b""
