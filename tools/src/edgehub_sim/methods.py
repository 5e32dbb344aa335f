"""Direct-method calls waiting for a module's reply on `$iothub/methods/res/{status}/?$rid=`."""

import asyncio
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

#: edgeHub accepts response timeouts of 5..300 s; the simulator also allows shorter ones for tests.
MAX_TIMEOUT_SECS = 300.0


@dataclass(frozen=True)
class MethodResult:
    """The module's answer."""

    status: int
    payload: Any


class PendingMethods:
    """Request ids and futures of method calls in flight (loop thread only)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[MethodResult]] = {}

    def open(self) -> tuple[str, asyncio.Future[MethodResult]]:
        """A fresh request id and the future its reply will complete."""
        rid = format(next(self._ids), "x")
        future: asyncio.Future[MethodResult] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        return rid, future

    def close(self, rid: str) -> None:
        """Forget a call (answered, timed out or cancelled)."""
        self._waiting.pop(rid, None)

    def resolve(self, rid: str, status: int, body: bytes) -> bool:
        """Complete the call `rid` with the module's reply; False if nobody is waiting for it."""
        future = self._waiting.pop(rid, None)
        if future is None or future.done():
            logger.warning("method reply for unknown or finished request id %s", rid)
            return False
        future.set_result(MethodResult(status, decode_payload(body)))
        return True


def decode_payload(body: bytes) -> Any:
    """JSON payload of a reply; empty → None; not JSON → the text as sent."""
    if not body.strip():
        return None
    text = body.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
