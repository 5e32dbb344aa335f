"""The uvicorn server of the module, with the limits uvicorn lacks: header size and header time.

uvicorn closes idle keep-alive connections, but a connection that sends its request line and headers
slowly (slowloris), or never, stays open for ever, its httptools parser takes headers of any size, and
a connection answered before its body ended (413, 503) stays open while the client stalls.
`GuardedHttpToolsProtocol` bounds all three; the body's own bounds live in `api.body`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from inference_module.settings import InferenceSettings

logger = logging.getLogger(__name__)


def _answer(status_line: bytes) -> bytes:
    return status_line + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


_TIMEOUT = _answer(b"HTTP/1.1 408 Request Timeout")
_TOO_BIG = _answer(b"HTTP/1.1 431 Request Header Fields Too Large")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus: headers must be complete within `header_timeout` seconds of
    the connection (or of the first byte of a keep-alive request) and within `max_header_bytes`."""

    def __init__(
        self, *args: Any, header_timeout: float, max_header_bytes: int, body_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._max_header_bytes = max_header_bytes
        self._body_timeout = body_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._body_done = True
        self._drain_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_bytes = 0
            self._header_timer = self.loop.call_later(self._header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, answer: bytes, reason: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            logger.warning("connection refused: %s", reason, extra={"client": self.client})
            self.transport.write(answer)
            self.transport.close()

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        self._refuse(_TIMEOUT, f"request headers not complete within {self._header_timeout:g} s")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._stop_draining()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self._max_header_bytes:
                self._refuse(_TOO_BIG, f"request headers larger than {self._max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._body_done = False
        self._arm()  # a keep-alive connection's next request: its headers get the same bound

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._body_done = True
        if self._drain_timer is not None:
            # Answered before its body ended: uvicorn cancelled its keep-alive timer when the rest of
            # the body came in and never arms it again, so the idle connection stayed open for ever.
            self._stop_draining()
            if not self.transport.is_closing() and not self.pipeline:
                self._unset_keepalive_if_required()
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._body_done and not self.transport.is_closing():
            # The app answered early (413, 503): the rest of the body is skipped as it arrives, but a
            # client that stalls or drips it must not hold the connection longer than a body may take.
            self._drain_timer = self.loop.call_later(self._body_timeout, self._drain_too_slow)

    def _stop_draining(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def _drain_too_slow(self) -> None:
        self._drain_timer = None
        if not self.transport.is_closing():
            logger.warning(
                "connection closed: the rest of an answered body is too slow", extra={"client": self.client}
            )
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()


def server_config(app: Any, settings: InferenceSettings, **overrides: Any) -> uvicorn.Config:
    """One worker (the model lives in this process), the guarded protocol, no uvicorn logging config."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "workers": 1,
        "log_config": None,
        "access_log": settings.access_log,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
        "proxy_headers": False,
        "http": functools.partial(
            GuardedHttpToolsProtocol,
            header_timeout=settings.header_timeout_seconds,
            max_header_bytes=settings.max_header_bytes,
            body_timeout=settings.body_timeout_seconds,
        ),
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
