"""`python -m edgehub_sim serve`: files it writes, readiness, SIGTERM, refusal of a bad manifest."""

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgehub_sim.__main__ import serve_command
from tests.edgehub_sim.conftest import random_loopback

pytestmark = pytest.mark.integration


def serve(manifest: Path, state_dir: Path, bind: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        serve_command(manifest, state_dir, bind, *extra),
        env=os.environ | {"PYTHONWARNINGS": "error::ResourceWarning"},
        stderr=subprocess.PIPE,
    )


@contextmanager
def serving(manifest: Path, state_dir: Path, bind: str, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """`serve` for the block's duration; killed (if still running) and its pipe closed afterwards."""
    process = serve(manifest, state_dir, bind, *extra)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def serve_to_end(manifest: Path, state_dir: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    """Run `serve` expecting it to exit by itself (a refused start), bounded in time."""
    command = serve_command(manifest, state_dir, random_loopback(), *extra)
    return subprocess.run(command, capture_output=True, timeout=60, check=False)


def wait_ready(process: subprocess.Popen[bytes], ready: Path, timeout: float = 30.0) -> None:
    """Wait for the ready file (bounded); fail early if the process dies."""
    deadline = time.monotonic() + timeout
    while not ready.exists():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, "simulator never became ready"
        time.sleep(0.05)


def test_serve_writes_files_then_ready_and_stops_on_sigterm(manifest_path: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with serving(manifest_path, state, random_loopback()) as process:
        wait_ready(process, state / "ready")
        assert sorted(p.name for p in (state / "env").iterdir()) == sorted(
            f"{m}.env" for m in ["sender", "receiver", "m1", "m2", "m3", "m4", "m5"]
        )
        assert (state / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert (state / "service.connstr").read_text().startswith("HostName=")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - started < 2.0
        assert not (state / "ready").exists()


def test_restart_keeps_keys_and_ca(manifest_path: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    bind = random_loopback()
    snapshots = []
    for _ in range(2):
        with serving(manifest_path, state, bind) as process:
            wait_ready(process, state / "ready")
            snapshots.append(
                (
                    (state / "ca.pem").read_text(),
                    (state / "env" / "sender.env").read_text(),
                    (state / "service.connstr").read_text(),
                )
            )
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
    assert snapshots[0] == snapshots[1]


def test_bad_manifest_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.json"
    manifest.write_text(json.dumps({"modulesContent": {}}))
    result = serve_to_end(manifest, tmp_path / "s")
    assert result.returncode == 1
    assert b"cannot start the simulator" in result.stderr
    assert not (tmp_path / "s" / "ready").exists()


def test_workload_socket_mode_is_read_as_octal() -> None:
    from edgehub_sim.__main__ import build_parser

    base = ["serve", "--manifest", "m.json", "--state-dir", "d"]
    assert build_parser().parse_args(base).workload_socket_mode == 0o600
    assert build_parser().parse_args([*base, "--workload-socket-mode", "666"]).workload_socket_mode == 0o666
