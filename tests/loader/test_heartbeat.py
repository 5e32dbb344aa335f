"""The heartbeat file the loader image's HEALTHCHECK reads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from loader_module.edge import beat_until


async def _wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll a file-system condition, bounded in count (10 s at most)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {what} within 10 s")


async def test_the_heartbeat_is_renewed_until_stop(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    stop = asyncio.Event()
    task = asyncio.create_task(beat_until(stop, path, 0.05))
    await _wait_for(path.exists, "first beat")
    first = path.stat().st_mtime_ns
    await _wait_for(lambda: path.stat().st_mtime_ns > first, "second beat")
    stop.set()
    async with asyncio.timeout(5):
        await task  # ends at once, not after a further interval


async def test_an_unwritable_heartbeat_is_logged_and_the_loader_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="loader_module.edge"):
        task = asyncio.create_task(beat_until(stop, tmp_path / "missing-dir" / "heartbeat", 0.05))
        await _wait_for(lambda: len(caplog.records) >= 2, "two failed beats")
    stop.set()
    async with asyncio.timeout(5):
        await task
    assert "cannot write the heartbeat file" in caplog.records[0].getMessage()
