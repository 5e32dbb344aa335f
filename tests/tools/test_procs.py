"""`stop_process`: SIGTERM first, SIGKILL when ignored, the whole group when the child leads one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from edge_tools.procs import leads_own_group, stop_process

IGNORES_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('up', flush=True)\n"
    "time.sleep(60)\n"
)


def spawn(code: str, *, new_session: bool) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=new_session
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "up"
    return process


def close(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    process.stdout.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_child_that_exits_on_sigterm_is_not_killed() -> None:
    process = spawn("import time\nprint('up', flush=True)\ntime.sleep(60)\n", new_session=False)
    assert not leads_own_group(process)
    assert stop_process(process, timeout=10) == -15
    close(process)


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    process = spawn(IGNORES_SIGTERM, new_session=True)
    assert leads_own_group(process)
    assert stop_process(process, timeout=0.5) == -9
    close(process)


def test_the_grandchildren_of_a_group_leader_are_stopped_too(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {IGNORES_SIGTERM!r}], stdout=subprocess.DEVNULL)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = spawn(code, new_session=True)
    grandchild = int(pid_file.read_text())
    stop_process(process, timeout=5)
    close(process)
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded: waiting for the kernel to reap a killed process
    assert not alive(grandchild)
