"""An httpx transport whose connections are asyncio's own TLS transports instead of anyio's streams.

httpx reaches the network through httpcore, which under asyncio uses anyio: every TLS record (16 KiB)
goes through a Python-level `SSLObject.read`, a cancel scope and a pass through httpcore and h11.
Here asyncio's TLS layer decrypts whole socket reads straight into one buffer per connection (a
`BufferedProtocol`), and each read hands httpcore all of it, about 256 KiB, so HTTP parsing runs once
per socket read. Streaming 256 MiB from Azurite over HTTPS on loopback on a 2-core machine, plain httpx
used about 2.6-3.2 ms of process CPU per MiB; the loader's event loop, copying into its blocks included,
1.3-1.4 ms (MD5 + SHA-256 of the same MiB: about 2.2 ms, in other threads). HTTP itself (h11,
keep-alive, pooling) is still httpcore's; only the byte pipe changes, through httpcore's public
`AsyncNetworkBackend` seam. Proxied downloads keep httpx's standard transport (TLS inside a CONNECT
tunnel is left to the stack that has always done it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, cast

import httpcore
import httpx

#: Received bytes buffered per connection: a read hands over all of them; past three quarters of
#: it the socket is paused until the consumer reads, so a slow consumer holds at most this much.
RECEIVE_BYTES = 512 * 1024

# httpcore's errors as httpx's, so callers see one exception tree whichever transport answered.
_ERRORS: Mapping[type[Exception], type[httpx.TransportError]] = {
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
}


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except tuple(_ERRORS) as exc:
        for kind, mapped in _ERRORS.items():
            if isinstance(exc, kind):
                raise mapped(str(exc)) from exc
        raise  # unreachable: every key of _ERRORS matched above


@contextlib.contextmanager
def _raising(timeout_error: type[Exception], os_error: type[Exception]) -> Iterator[None]:
    """OS, TLS and timeout failures of one operation as the httpcore error httpcore expects."""
    try:
        yield
    except TimeoutError as exc:
        raise timeout_error(str(exc) or "timed out") from exc
    except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
        raise os_error(str(exc) or type(exc).__name__) from exc


class _Connection(asyncio.BufferedProtocol):
    """One connection's protocol. Received bytes (decrypted by asyncio's TLS layer straight into the
    buffer `get_buffer` lends) collect in one preallocated buffer, and a read takes all of them at once:
    no per-read copy into a `StreamReader`, and one pass through httpcore and h11 per socket read instead
    of one per 64 KiB. Past `pause_at` buffered bytes the socket is paused until the next read."""

    def __init__(self, capacity: int = RECEIVE_BYTES) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray(capacity)
        self._filled = 0
        #: Room kept free when reading is paused: the most one socket read may hand over.
        self._pause_at = capacity - capacity // 4
        self._reading_paused = False
        self._eof = False
        self._lost: Exception | None = None
        self._closed = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not registered as `asyncio.Transport` subclasses).
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        del sizehint  # asyncio reads at most what fits; a smaller buffer only means another read
        if self._filled == len(self._buffer):
            # Only if a transport delivers after `pause_reading`: move to a larger buffer rather than
            # lose bytes (lent views of the old one stay valid: it is not resized, just replaced).
            self._buffer = self._buffer + bytes(len(self._buffer))
        return memoryview(self._buffer)[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        if self._filled >= self._pause_at and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        _wake(self._readable)

    def eof_received(self) -> None:
        self._eof = True
        _wake(self._readable)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if exc is not None:
            self._lost = exc
        self._eof = True
        _wake(self._readable)
        _wake(self._writable)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        _wake(self._writable)
        self._writable = None

    async def receive(self) -> bytes:
        """Everything received so far (waiting for some), b"" at a clean end; a connection lost with
        an error raises it once the bytes that arrived before it have been handed over."""
        if not self._filled and not self._eof:
            self._readable = asyncio.get_running_loop().create_future()
            try:
                await self._readable
            finally:
                self._readable = None
        if self._filled:
            data = bytes(memoryview(self._buffer)[: self._filled])
            self._filled = 0
            if self._reading_paused and self.transport is not None and not self._closed:
                self._reading_paused = False
                self.transport.resume_reading()
            return data
        if self._lost is not None:
            raise self._lost
        return b""

    async def drain(self) -> None:
        """Wait until the transport takes more (after `pause_writing`); a lost connection raises."""
        if self._writable is not None:
            await asyncio.shield(self._writable)
        if self._closed:
            raise self._lost or ConnectionResetError("connection lost")

    def readable(self) -> bool:
        """Bytes, an end or an error are waiting: an idle keep-alive connection must not be reused."""
        closing = self.transport is None or self.transport.is_closing()
        return self._filled > 0 or self._eof or closing


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection for httpcore. A read may return more than the `max_bytes` httpcore asks for
    (its HTTP/1.1 reader always asks for 64 KiB): h11 takes data of any size, and httpcore's own mock
    stream does the same. (The `timeout` parameters are httpcore's interface, hence the ASYNC109
    exceptions.)"""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    @property
    def _transport(self) -> asyncio.Transport:
        assert self._connection.transport is not None
        return self._connection.transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        del max_bytes
        with _raising(httpcore.ReadTimeout, httpcore.ReadError):
            async with asyncio.timeout(timeout):
                return await self._connection.receive()

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        with _raising(httpcore.WriteTimeout, httpcore.WriteError):
            async with asyncio.timeout(timeout):
                await self._connection.drain()  # raises if the connection is gone
                self._transport.write(buffer)
                await self._connection.drain()

    async def aclose(self) -> None:
        # No TLS close_notify round trip: HTTP/1.1 bodies are delimited, and a dead peer must not
        # hold the close (anyio's close does not wait for the peer either).
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        with _raising(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(
                    self._transport, self._connection, ssl_context, server_hostname=server_hostname
                )
        if tls is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._connection.transport = tls
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._connection.readable()
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info in ("ssl_object", "socket"):
            return self._transport.get_extra_info(info)
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """TCP connections as asyncio streams (no Unix sockets: downloads go to URLs)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = None if local_address is None else (local_address, 0)
        loop = asyncio.get_running_loop()
        with _raising(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    _Connection, host, port, local_addr=local
                )
        sock: socket.socket = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(connection)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Body(httpx.AsyncByteStream):
    """httpcore's response body, its errors as httpx's; closing it returns the connection to the pool."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _as_httpx_errors():
                await close()


class AsyncioTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 through httpcore's pool over `AsyncioBackend` connections, trusting `verify`."""

    def __init__(self, verify: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify, http1=True, http2=False, network_backend=AsyncioBackend()
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(core)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
