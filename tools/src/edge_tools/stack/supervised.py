"""What every local stack shares: children started together, always stopped together, and waits that
fail early (with the child's output) when a child dies instead of timing out."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from edge_tools.stack.processes import ManagedProcess, ProcessFailed


class Supervised(ABC):
    """A context manager: leaving it (normally, on error or Ctrl-C) stops every child."""

    logs: Path

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def children(self) -> Iterable[ManagedProcess]: ...

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def wait_for(
        self, what: str, predicate: Callable[..., Any], *, timeout: float = 120.0, interval: float = 0.25
    ) -> Any:
        """Poll `predicate()` until it returns a truthy value; fail with the children's output if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            for process in self.children():
                if not process.running():
                    raise process.failure(f"exited with code {process.returncode()} while waiting for {what}")
            time.sleep(interval)
        raise ProcessFailed(f"timed out after {timeout:.0f} s waiting for {what}; logs in {self.logs}")
