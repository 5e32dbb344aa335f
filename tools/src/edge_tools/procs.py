"""Stopping child processes so that nothing is left running: one implementation for every tool."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any


def leads_own_group(process: subprocess.Popen[Any]) -> bool:
    """True when the child was started in its own session/group (`start_new_session=True`)."""
    try:
        return os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        return False


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> int | None:
    """SIGTERM, wait up to `timeout`, then SIGKILL; signals go to the child's whole group when it leads
    one (so its own children go too), else to the child alone. Returns the exit code."""
    group = leads_own_group(process)

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)

    if process.poll() is None:
        send(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
    if group:
        send(signal.SIGKILL)  # the leader may be gone while its group still holds children
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)
    return process.poll()
