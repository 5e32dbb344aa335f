"""Helpers for the loader's end-to-end tests: the real simulator, real Azurite, `python -m loader_module`.

Imported by `test_loader_*.py` (kept out of a shared `conftest.py` so other suites are unaffected).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge_shared.desired import desired_patch
from edge_tools.azurite import Azurite
from edge_tools.fixtures import digests
from edge_tools.stack.stack import LOOPBACK_NO_PROXY
from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import start_simulator as start_simulator_with

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = REPO_ROOT / "deployment.json"


def start_simulator(state_dir: Path) -> EdgeHubSimulator:
    """The simulator with the repository's `deployment.json` on a random 127.x.y.z (the SDK dials fixed
    ports), retrying a taken address."""
    return start_simulator_with(DEPLOYMENT, state_dir)


class LoaderProcess:
    """`python -m loader_module` wired to a simulator; stderr (JSON logs) goes to a file."""

    def __init__(
        self,
        simulator: EdgeHubSimulator,
        azurite: Azurite,
        model_root: Path,
        log: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LOADER_", "IOTEDGE_"))},
            **simulator.env_for("loader"),
            "LOADER_MODEL_ROOT": str(model_root),
            "LOADER_CA_FILE": str(azurite.ca_file),
            "LOADER_MIN_FREE_BYTES": "0",
            "LOADER_BACKOFF_INITIAL": "0.05",
            "LOADER_BACKOFF_MAX": "0.2",
            "LOADER_PROGRESS_INTERVAL": "0.2",
            "LOADER_READ_TIMEOUT": "5",
            "LOADER_LOG_LEVEL": "DEBUG",
            "LOADER_NO_PROXY": LOOPBACK_NO_PROXY,
            "LOADER_SERVE_CONFIRM_TIMEOUT": "0",  # no inference module beside it
            **(extra_env or {}),
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loader_module"],
                env=self.env,
                stdout=sink,
                stderr=sink,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@contextmanager
def loader_process(
    simulator: EdgeHubSimulator,
    azurite: Azurite,
    model_root: Path,
    log: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LoaderProcess]:
    process = LoaderProcess(simulator, azurite, model_root, log, extra_env)
    process.start()
    try:
        yield process
    finally:
        process.close()


def publish(azurite: Azurite, data: bytes, version: str, *, port: int | None = None) -> dict[str, Any]:
    """Upload a ZIP; the reference architecture's three desired properties naming it."""
    name = f"e2e/{uuid.uuid4().hex}/{version}.zip"
    azurite.upload("models", name, data)
    return desired_patch(
        f"{version}.zip", azurite.sas_url("models", name, port=port), content_md5=digests(data).md5_base64
    )


def model_update(simulator: EdgeHubSimulator) -> dict[str, Any]:
    value = simulator.reported("loader").get("ModelUpdate") or {}
    assert isinstance(value, dict)
    return value


def is_state(simulator: EdgeHubSimulator, state: str, version: str | None = None) -> bool:
    update = model_update(simulator)
    return update.get("state") == state and (version is None or update.get("version") == version)
