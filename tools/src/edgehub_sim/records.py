"""What the simulator saw, for tests and `GET /sim/messages`: routed and upstream messages.

Written on the simulator's loop, read from any thread; `ChangeFeed` lets another thread wait for a
condition without polling on a timer.
"""

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

#: Records kept in memory; older ones are dropped first (a long local stack must not grow forever).
MAX_RECORDS = 100_000


@dataclass(frozen=True)
class RecordedMessage:
    """One routed copy of a module message: to `$upstream` or to a module input."""

    seq: int
    received_at: float
    sink: Literal["upstream", "module"]
    route: str
    source_module: str
    output: str | None
    body: bytes
    system_properties: dict[str, str] = field(default_factory=dict)
    app_properties: dict[str, str] = field(default_factory=dict)
    target_module: str | None = None
    target_input: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form: the body as base64 and, when it is UTF-8, also as text."""
        try:
            text: str | None = self.body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {
            "seq": self.seq,
            "receivedAt": self.received_at,
            "sink": self.sink,
            "route": self.route,
            "sourceModule": self.source_module,
            "output": self.output,
            "targetModule": self.target_module,
            "targetInput": self.target_input,
            "systemProperties": self.system_properties,
            "appProperties": self.app_properties,
            "bodyBase64": base64.b64encode(self.body).decode("ascii"),
            "body": text,
        }


class ChangeFeed:
    """A counter bumped on every state change, with a thread-safe wait."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._version = 0

    def bump(self) -> None:
        """Announce a change (any thread)."""
        with self._condition:
            self._version += 1
            self._condition.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Evaluate `predicate` after each change until it holds or `timeout` seconds pass.

        The predicate runs without the lock held, so it may call back into the simulator.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._condition:
                seen = self._version
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wait_past(seen, remaining)

    def _wait_past(self, seen: int, timeout: float) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._version != seen, timeout)


class MessageLog:
    """Thread-safe list of routed messages."""

    def __init__(self, feed: ChangeFeed) -> None:
        self._feed = feed
        self._lock = threading.Lock()
        self._records: list[RecordedMessage] = []
        self._seq = 0

    def next_seq(self) -> int:
        """A sequence number for the next record."""
        with self._lock:
            self._seq += 1
            return self._seq

    def add(self, record: RecordedMessage) -> None:
        """Keep a record and tell waiters."""
        with self._lock:
            self._records.append(record)
            if len(self._records) > MAX_RECORDS:
                del self._records[: len(self._records) - MAX_RECORDS]
        self._feed.bump()

    def snapshot(self, sink: Literal["upstream", "module"] | None = None) -> list[RecordedMessage]:
        """Records in arrival order, optionally of one sink kind."""
        with self._lock:
            return [r for r in self._records if sink is None or r.sink == sink]
