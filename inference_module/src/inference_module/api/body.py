"""Reading the request body once, with the size limit applied before or while reading it."""

from __future__ import annotations

from fastapi import Request

from inference_module.errors import BodyTooLargeError


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The whole body; `BodyTooLargeError` as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) > limit:
            raise BodyTooLargeError(f"the body is {declared} bytes; the limit is {limit}")
        return await request.body()
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise BodyTooLargeError(f"the body exceeds the limit of {limit} bytes")
    return bytes(received)
