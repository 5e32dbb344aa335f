"""`python -m inference_module` as a real process: settings from the environment, JSON logs, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_tools.fixtures import FixtureCatalog
from tests.inference.helpers import install_model, module_env

pytestmark = pytest.mark.integration
TIMEOUT = 60.0
RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


async def next_record(stream: asyncio.StreamReader, records: list[dict[str, Any]]) -> dict[str, Any]:
    line = await stream.readline()
    if not line:
        raise EOFError("the module closed its log stream")
    record: dict[str, Any] = json.loads(line)
    records.append(record)
    return record


async def test_the_module_serves_logs_json_and_stops_on_sigterm(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "inference_module", env=module_env(model_root), stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    records: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            port = None
            while port is None:
                match = RUNNING.search((await next_record(process.stderr, records))["msg"])
                port = int(match.group(1)) if match else None
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/health/ready")).status_code == 200
                image = catalog.path(catalog.image("one-square-jpeg").file).read_bytes()
                assert (await client.post("/score", content=image)).status_code == 200
            access = None
            while access is None:
                record = await next_record(process.stderr, records)
                access = record if record.get("path") == "/score" else None
            assert (access["method"], access["status"], access["logger"]) == ("POST", 200, "uvicorn.access")
            process.send_signal(signal.SIGTERM)
            rest = await process.stderr.read()
            records.extend(json.loads(line) for line in rest.splitlines() if line.strip())
            # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why
            assert await process.wait() in (0, -signal.SIGTERM)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert any(
        record.get("msg") == "model swapped in" and record.get("model_version") == "v1" for record in records
    )


async def test_invalid_settings_stop_the_module_with_a_clear_message(model_root: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "inference_module",
        env=module_env(model_root, INFERENCE_SCORE_THRESHOLD="2"),
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(TIMEOUT):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    # Named by the variable the operator set, and the value not echoed.
    assert "INFERENCE_SCORE_THRESHOLD: " in stderr.decode()
    assert "input_value" not in stderr.decode()


async def test_a_port_already_taken_is_a_failed_start_not_a_clean_exit(model_root: Path) -> None:
    """IoT Edge restarts a module that fails, and a supervisor must see it: uvicorn's startup-failure code."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "inference_module",
            env={**module_env(model_root), "INFERENCE_PORT": str(port)},
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(TIMEOUT):
            _, err = await process.communicate()
    assert process.returncode == 3
    assert b"address already in use" in err
