"""A persistent MQTT session: subscriptions and the QoS-1 queue of one client id.

The SDK always connects with clean_session=0 and never re-subscribes, so both outlive connections and
simulator restarts. Queued messages leave the queue only on the module's PUBACK; anything in flight when
a connection drops goes back to the front, flagged DUP, in its original order.
"""

import asyncio
import time
from collections import deque
from dataclasses import dataclass, replace

from edgehub_sim.mqtt.topics import matches


@dataclass(frozen=True)
class QueuedMessage:
    """A message for a module input, persisted until PUBACK."""

    seq: int
    priority: int
    expires_at: float
    topic: str
    payload: bytes
    dup: bool = False


class Session:
    """State of one client id; touched only on the simulator's loop."""

    def __init__(self, client_id: str, subscriptions: set[str], persisted: bool) -> None:
        self.client_id = client_id
        self.subscriptions = set(subscriptions)
        #: True once a CONNECT created it in the store: the next CONNACK says session-present.
        self.persisted = persisted
        self.inflight: dict[int, QueuedMessage] = {}
        self.wake = asyncio.Event()
        self._pending: dict[int, deque[QueuedMessage]] = {}

    def subscribed(self, topic: str) -> bool:
        """Is any subscription matching `topic`?"""
        return any(matches(topic_filter, topic) for topic_filter in self.subscriptions)

    def push(self, message: QueuedMessage) -> None:
        """Queue a message behind those of its priority and wake the sender."""
        self._pending.setdefault(message.priority, deque()).append(message)
        self.wake.set()

    def pop_next(self, now: float | None = None) -> tuple[QueuedMessage | None, list[QueuedMessage]]:
        """The next message to send (lowest priority number first) and any expired ones skipped."""
        current = time.time() if now is None else now
        expired: list[QueuedMessage] = []
        for priority in sorted(self._pending):
            queue = self._pending[priority]
            while queue:
                message = queue.popleft()
                if message.expires_at <= current:
                    expired.append(message)
                    continue
                return message, expired
        return None, expired

    def put_back(self, message: QueuedMessage) -> None:
        """Return a message not sent after all to the front of its queue."""
        self._pending.setdefault(message.priority, deque()).appendleft(message)

    def requeue_inflight(self) -> None:
        """After a drop: in-flight messages go back to the front, DUP set, order kept."""
        for message in reversed(list(self.inflight.values())):
            self.put_back(replace(message, dup=True))
        self.inflight.clear()

    def queued_count(self) -> int:
        """Messages waiting for a PUBACK (queued or in flight)."""
        return len(self.inflight) + sum(len(queue) for queue in self._pending.values())
