"""The download transport over asyncio's TLS streams: the same answers and errors as httpx's own."""

from __future__ import annotations

import asyncio
import os
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from edge_tools.azurite import Azurite
from edge_tools.faultproxy import FaultProxy, Policy
from loader_module.streams import AsyncioTransport

pytestmark = pytest.mark.integration

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[str]:
    """A plain-HTTP origin on a loopback port, answering with `handler`; closed on exit."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def _client(azurite: Azurite | None = None, *, timeout: float = 5.0) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=None if azurite is None else str(azurite.ca_file))
    return httpx.AsyncClient(transport=AsyncioTransport(context), timeout=httpx.Timeout(timeout))


def _blob(azurite: Azurite, size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    name = f"streams/{uuid.uuid4().hex}.bin"
    azurite.upload("models", name, data)
    return name, data


async def test_https_body_arrives_whole_and_the_connection_is_kept(azurite: Azurite) -> None:
    name, data = _blob(azurite, 3 * 1024 * 1024 + 7)
    with FaultProxy(azurite.port) as proxy:
        proxy.set_policies([Policy()])
        async with _client(azurite) as client:
            for _ in range(2):
                async with client.stream("GET", azurite.sas_url("models", name, port=proxy.port)) as answer:
                    assert answer.status_code == 200
                    assert b"".join([chunk async for chunk in answer.aiter_raw()]) == data
        assert proxy.connections == 1, "the second request reused the keep-alive connection"


async def test_reset_mid_body_is_an_httpx_read_error(azurite: Azurite) -> None:
    name, _ = _blob(azurite, 1024 * 1024)
    with FaultProxy(azurite.port) as proxy:
        proxy.set_policies([Policy(reset_after=256 * 1024)])
        async with _client(azurite) as client:
            with pytest.raises(httpx.ReadError):
                async with client.stream("GET", azurite.sas_url("models", name, port=proxy.port)) as answer:
                    async for _ in answer.aiter_raw():
                        pass


async def test_untrusted_certificate_is_an_httpx_connect_error(azurite: Azurite) -> None:
    name, _ = _blob(azurite, 16)
    async with _client(None) as client:  # system CAs only: Azurite's throwaway CA is not among them
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(azurite.sas_url("models", name))


async def test_refused_port_is_an_httpx_connect_error() -> None:
    async with _server(_never_called) as origin:
        pass  # closed: nothing listens there any more
    async with _client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(origin)


async def test_stalled_body_is_an_httpx_read_timeout() -> None:
    release = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await writer.drain()
        await release.wait()
        writer.close()

    async with _server(stall) as origin, _client(timeout=0.2) as client:
        try:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(origin)
        finally:
            release.set()


async def test_connection_the_server_closed_while_idle_is_not_reused() -> None:
    connections = 0
    closed = asyncio.Event()

    async def once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")  # no `Connection: close`
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    async with _server(once_then_close) as origin, _client() as client:
        first = await client.get(origin)
        await closed.wait()
        # The FIN is already in the client socket (loopback): one loop turn reads it. Without the
        # idle check the pool would reuse the dead connection and fail with "Server disconnected".
        await asyncio.sleep(0)
        second = await client.get(origin)
    assert (first.text, second.text) == ("ok", "ok")
    assert connections == 2


async def _never_called(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    del reader
    writer.close()
