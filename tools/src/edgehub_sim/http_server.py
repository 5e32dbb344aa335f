"""Run an ASGI app with uvicorn on the simulator's own event loop, on a socket bound beforehand.

Binding first makes an address-in-use error surface in `start()`, and the caller knows the listener
accepts connections before it writes `ready`.
"""

import asyncio
import logging
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

logger = logging.getLogger(__name__)

_STARTUP_POLL_SECS = 0.01
_STARTUP_TIMEOUT_SECS = 10.0


class HttpListener:
    """One uvicorn server on pre-bound sockets (TCP+TLS or unix); `max_connections` open at once,
    requests on more are answered 503."""

    def __init__(
        self,
        app: ASGIApp,
        sock: socket.socket | Sequence[socket.socket],
        certfile: Path | None = None,
        keyfile: Path | None = None,
        *,
        max_connections: int | None = None,
    ) -> None:
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
            ssl_version=ssl.PROTOCOL_TLS_SERVER,
            timeout_graceful_shutdown=1,
            # uvicorn answers 503 once open connections reach the limit, counting the asking one.
            limit_concurrency=None if max_connections is None else max_connections + 1,
        )
        self._server = uvicorn.Server(config)
        self._sockets = [sock] if isinstance(sock, socket.socket) else list(sock)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving and return once uvicorn accepts connections."""
        self._task = asyncio.create_task(self._server.serve(sockets=self._sockets))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _STARTUP_TIMEOUT_SECS
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("uvicorn stopped during start-up")
            if loop.time() > deadline:
                raise TimeoutError("uvicorn did not start in time")
            await asyncio.sleep(_STARTUP_POLL_SECS)

    async def stop(self) -> None:
        """Ask uvicorn to exit and wait for it (bounded by its graceful-shutdown timeout)."""
        if self._task is None:
            for sock in self._sockets:
                sock.close()
            return
        self._server.should_exit = True
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        # A TLS connection uvicorn closed still waits for the client's close_notify (up to 30 s);
        # abort those so no socket outlives the simulator's loop.
        for protocol in list(self._server.server_state.connections):
            transport = getattr(protocol, "transport", None)
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
        for sock in self._sockets:
            sock.close()


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (SO_REUSEADDR, as asyncio's servers use)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def bind_unix(path: Path, mode: int = 0o600) -> socket.socket:
    """A listening unix socket at `path` (replacing a stale one) with permissions `mode` (connecting
    needs write permission: the default lets only the owner in)."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        path.chmod(mode)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
