"""A real HTTPS server on a loopback port for an ASGI app (uvicorn, a throwaway `trustme` CA): for the
misbehaving storage servers Azurite cannot play (5xx storms, chunked floods, redirects)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
import uvicorn

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class HttpsServer:
    #: `https://127.0.0.1:<port>`
    origin: str
    port: int
    #: PEM of the CA that signed the server certificate (pass as `LOADER_CA_FILE`).
    ca_file: Path


def write_ca(folder: Path, *hosts: str) -> tuple[Path, Path, Path]:
    """A new CA and a leaf for `hosts`: (ca.pem, cert.pem, key.pem) in `folder`."""
    ca = trustme.CA()
    leaf = ca.issue_cert(*hosts)
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf.private_key_pem.write_to_path(str(key_file))
    leaf.cert_chain_pems[0].write_to_path(str(cert_file))
    return ca_file, cert_file, key_file


@asynccontextmanager
async def serve_https(app: App, folder: Path, *, tls: bool = True) -> AsyncIterator[HttpsServer]:
    """Serve `app` on 127.0.0.1 (plain HTTP when `tls` is false); stopped on exit."""
    ca_file, cert_file, key_file = write_ca(folder, "127.0.0.1")
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        ssl_certfile=str(cert_file) if tls else None,
        ssl_keyfile=str(key_file) if tls else None,
    )
    server = uvicorn.Server(config)
    # A socket that listens before uvicorn runs: clients queue in its backlog, so no start-up wait.
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield HttpsServer(f"{'https' if tls else 'http'}://127.0.0.1:{port}", port, ca_file)
    finally:
        server.should_exit = True
        await task
        sock.close()
