"""The twin is no port-probing oracle (issue 17, item 14).

Whoever may write desired properties could point `DownloadUrl` at internal addresses and read the
reported error: "connection refused", "wrong version number" (no TLS there) and "certificate verify
failed" (a TLS service) would map the network. All three now report the same code and the same
message; the detail of each attempt is in the device log only.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from loader_module.edge import make_http_client
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import desired_for, make_settings, model_zip
from tests.loader.https_server import Receive, Send, serve_https, write_ca
from tests.loader.service_helpers import running_loader, update, wait_state

pytestmark = pytest.mark.integration


async def _ok(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    del scope, receive
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def _target(kind: str, folder: Path) -> AsyncIterator[str]:
    """An `https://127.0.0.1:<port>` origin where nothing listens, plain HTTP answers, or TLS answers
    with a certificate the loader does not trust."""
    if kind == "refused":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield f"https://127.0.0.1:{port}"
        return
    async with serve_https(_ok, folder, tls=kind == "untrusted-tls") as server:
        yield f"https://127.0.0.1:{server.port}"


async def test_refused_plain_and_untrusted_targets_report_the_same_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trusted_ca, _, _ = write_ca(tmp_path / "loader-ca", "127.0.0.1")  # not the servers' CA
    reported: dict[str, dict[str, str]] = {}
    logged: dict[str, str] = {}
    for kind in ("refused", "plain-http", "untrusted-tls"):
        root = tmp_path / kind / "models"
        root.mkdir(parents=True)
        settings = make_settings(root, ca_file=trusted_ca, download_attempts=2)
        caplog.clear()
        async with _target(kind, tmp_path / kind / "tls") as origin:
            props = desired_for(model_zip("onnx"), f"{origin}/internal/x.zip?sig=PROBE", "probe-1.zip")
            hub = FakeEdgeHubClient(desired={"$version": 1, **props})
            with caplog.at_level(logging.WARNING, logger="loader_module"):
                async with make_http_client(settings) as client, running_loader(settings, hub, client):
                    await wait_state(hub, "failed", "probe-1")
        reported[kind] = update(hub)["error"]
        logged[kind] = " ".join(
            str(getattr(record, "reason", ""))
            for record in caplog.records
            if record.name == "loader_module.download"
        )
    assert reported["refused"] == reported["plain-http"] == reported["untrusted-tls"]
    assert reported["refused"]["code"] == "download_failed"
    assert "network error" in reported["refused"]["message"]
    # The device log keeps what tells them apart.
    assert len(set(logged.values())) == 3, logged
    assert "ConnectError" in logged["refused"]
    assert "CERTIFICATE_VERIFY_FAILED" in logged["untrusted-tls"]
