"""The fleet stack's own failure paths: an inference port taken before it is bound is retried."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import edge_tools.stack.fleet as fleet_module
from edge_tools.stack.fleet import FleetStack
from edge_tools.stack.network import free_port as real_free_port
from edge_tools.stack.stack import inference_live

pytestmark = pytest.mark.integration


def test_an_inference_port_taken_before_it_is_bound_is_retried_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        handed: list[int] = []

        def free_port(host: str = "127.0.0.1") -> int:
            # The first port handed to the module is one another process holds by the time it binds.
            if host != "127.0.0.1":  # the simulator's service port, on its own loopback address
                return real_free_port(host)
            port = busy if not handed else real_free_port(host)
            handed.append(port)
            return port

        monkeypatch.setattr(fleet_module, "free_port", free_port)
        with FleetStack(tmp_path, 1, inference_on=1) as stack:
            (device,) = stack.device_ids
            url = stack.inference_urls[device]
            assert not url.endswith(f":{busy}") and inference_live(url)
    assert handed[0] == busy
