"""Reading the request body once, bounded in size, in time and in the memory all bodies hold together.

A slow or stalled client must not hold memory for long, nor many of them much memory at once: each
body must arrive within `timeout` seconds, and the bytes of every body being read or scored stay under
one budget (a body that would go past it is answered 503 at once; its client retries).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from prometheus_client import Gauge
from starlette.requests import ClientDisconnect

from inference_module.errors import (
    BodyTimeoutError,
    BodyTooLargeError,
    ClientDisconnectedError,
    OverloadedError,
)


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_bytes: int
    timeout_seconds: float


class BodyBudget:
    """Bytes held by request bodies across the app. Used from the event loop only, so no lock."""

    def __init__(self, limit: int, gauge: Gauge) -> None:
        self._limit = limit
        self._held = 0
        self._gauge = gauge

    @property
    def held(self) -> int:
        return self._held

    def take(self, size: int) -> None:
        if self._held + size > self._limit:
            raise OverloadedError(
                f"request bodies in progress hold {self._held} bytes (limit {self._limit}); retry shortly"
            )
        self._held += size
        self._gauge.set(self._held)

    def give_back(self, size: int) -> None:
        self._held -= size
        self._gauge.set(self._held)


@contextlib.asynccontextmanager
async def limited_body(request: Request, limits: BodyLimits, budget: BodyBudget) -> AsyncIterator[bytes]:
    """The whole body, counted against `budget` until the `async with` block ends.

    `BodyTooLargeError` as soon as it is known to exceed the limit (from `Content-Length` before
    reading), `BodyTimeoutError` when it takes too long, `ClientDisconnectedError` when the client
    hangs up, `OverloadedError` when the budget is spent.
    """
    taken = 0
    try:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > limits.max_bytes:
                raise BodyTooLargeError(f"the body is {declared} bytes; the limit is {limits.max_bytes}")
            budget.take(int(declared))  # refused before a byte is read when it cannot fit
            taken = int(declared)
        chunks: list[bytes] = []
        received = 0
        try:
            async with asyncio.timeout(limits.timeout_seconds):
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > limits.max_bytes:
                        raise BodyTooLargeError(f"the body exceeds the limit of {limits.max_bytes} bytes")
                    if received > taken:
                        budget.take(received - taken)
                        taken = received
                    chunks.append(chunk)
        except TimeoutError:
            raise BodyTimeoutError(
                f"the body did not arrive within {limits.timeout_seconds:g} s ({received} bytes received)"
            ) from None
        except ClientDisconnect:
            raise ClientDisconnectedError(
                f"the client closed the connection after {received} bytes of the body"
            ) from None
        data = b"".join(chunks)
        del chunks
        yield data
    finally:
        budget.give_back(taken)
