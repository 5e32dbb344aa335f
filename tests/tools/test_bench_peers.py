"""The peers' environment and bookkeeping in the serving section (the peers run in `make bench`)."""

from __future__ import annotations

import base64
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_tools.bench.peers import (
    ensure_peer_env,
    litserve_body,
    mlserver_body,
    requirements,
    tree_cpu_seconds,
    write_mlserver_settings,
)


def test_requirements_pin_the_peers_and_this_interpreters_runtimes() -> None:
    pins = dict(line.split("==") for line in requirements())
    assert {"litserve", "mlserver"} <= set(pins)
    assert pins["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert pins["numpy"] == importlib.metadata.version("numpy")


def test_without_uv_the_reason_is_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    reason = ensure_peer_env(tmp_path / "peers")
    assert isinstance(reason, str) and "uv" in reason


def test_a_failed_install_returns_uvs_own_last_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    uv = tools / "uv"  # stands in for a uv that cannot reach the registry
    uv.write_text("#!/bin/sh\necho 'error: Failed to fetch: litserve (no network)' >&2\nexit 2\n")
    uv.chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    reason = ensure_peer_env(tmp_path / "peers")
    assert reason == "`uv venv` failed: error: Failed to fetch: litserve (no network)"
    assert not (tmp_path / "peers" / "requirements.txt").exists(), "no stamp: the next run tries again"


def test_bodies_carry_the_image_in_each_peers_shape() -> None:
    image = b"\xff\xd8jpeg bytes"
    assert base64.b64decode(json.loads(litserve_body(image))["image"]) == image
    (tensor,) = json.loads(mlserver_body(image))["inputs"]
    assert (tensor["datatype"], tensor["shape"]) == ("BYTES", [1])
    assert base64.b64decode(tensor["data"][0]) == image


def test_mlserver_settings_name_the_runtime_and_keep_metrics_out_of_the_working_directory(
    tmp_path: Path,
) -> None:
    write_mlserver_settings(tmp_path, Path("/m/model.onnx"), None, "onnx", 8123)
    settings = json.loads((tmp_path / "settings.json").read_text())
    model = json.loads((tmp_path / "model-settings.json").read_text())
    assert settings["http_port"] == 8123 and settings["metrics_dir"].startswith(str(tmp_path))
    assert len({settings["http_port"], settings["grpc_port"], settings["metrics_port"]}) == 3
    assert model["implementation"] == "edge_tools.bench.peer_mlserver.PipelineRuntime"
    assert model["parameters"] == {"uri": "/m/model.onnx", "extra": {"labels": "", "runtime": "onnx"}}


def test_tree_cpu_counts_a_live_grandchild() -> None:
    # The grandchild burns 0.5 s of CPU, says so, then waits; its parent only waits for it (its own
    # start-up takes a tenth of the bound; /proc counts in clock ticks, hence 0.4).
    grandchild = (
        "import sys, time\n"
        "while time.process_time() < 0.5: pass\n"
        "print('busy done', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {grandchild!r}])\n"
    process = subprocess.Popen(
        [sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "busy done\n"  # the grandchild inherited the pipes
        assert tree_cpu_seconds(process.pid) >= 0.4
    finally:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()
        process.wait(30)
        process.stdout.close()
