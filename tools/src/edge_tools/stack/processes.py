"""Child processes that are always reaped: own process group, logs collected, SIGTERM then SIGKILL."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from edge_tools.procs import stop_process

logger = logging.getLogger(__name__)


class ProcessFailed(RuntimeError):
    """A child exited or never became ready; the message ends with its last output lines."""


@dataclass(frozen=True)
class RunAs:
    """Start a child as another user, as the module images do (needs root).

    `python` is an interpreter that user can execute with the project's packages importable; None keeps
    the stack's own.
    """

    uid: int
    gid: int
    python: str | None = None


class ManagedProcess:
    """One child process in its own session, its output prefixed and copied to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        echo: TextIO | None = None,
        cwd: Path | None = None,
        run_as: RunAs | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.echo = echo
        self.cwd = cwd
        self.run_as = run_as
        self.tail: deque[str] = deque(maxlen=40)
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._line_hooks: list[Callable[[str], None]] = []

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def on_line(self, hook: Callable[[str], None]) -> None:
        self._line_hooks.append(hook)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        user = self.run_as
        self._process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=None if user is None else user.uid,
            group=None if user is None else user.gid,
            extra_groups=None if user is None else [],
        )
        self._reader = threading.Thread(target=self._pump, name=f"log-{self.name}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        with self.log_path.open("a", encoding="utf-8") as log:
            for raw in iter(self._process.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.tail.append(line)
                log.write(line + "\n")
                log.flush()
                if self.echo is not None:
                    self.echo.write(f"[{self.name}] {line}\n")
                    self.echo.flush()
                for hook in self._line_hooks:
                    hook(line)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def failure(self, reason: str) -> ProcessFailed:
        recent = "\n".join(f"    {line}" for line in self.tail)
        return ProcessFailed(f"{self.name}: {reason}\n  last output ({self.log_path}):\n{recent}")

    def wait_ready(self, check: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Poll `check` (cheap, non-blocking) until true; fail fast if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if not self.running():
                raise self.failure(f"exited with code {self.returncode()} before {what}")
            time.sleep(0.05)
        raise self.failure(f"not {what} within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left: no orphan survives."""
        process = self._process
        if process is None:
            return
        if stop_process(process, timeout) is None:
            logger.warning("%s did not exit even after SIGKILL", self.name)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would (for restart tests)."""
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
        self.stop()
