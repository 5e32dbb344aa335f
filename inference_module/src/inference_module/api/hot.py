"""The scoring routes answered before FastAPI's routing and middleware stack.

FastAPI walks its middleware, matches the path against every route and opens an exit stack per request:
about 0.09 ms of CPU for a trivial route (in process, on the 2-core dev machine), where a light
detector's whole pipeline takes 2-4 ms. `POST /score` and `POST /score/annotated` go straight to
the same handlers FastAPI registers (and documents in OpenAPI), and their errors leave through the same
`response_for`; every other request, and any other method on these paths, goes to FastAPI unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from inference_module.api.errors import response_for

Handler = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    """ASGI middleware: a `POST` to one of `routes` is answered by its handler directly."""

    def __init__(self, app: ASGIApp, *, routes: Mapping[str, Handler], retry_after: int) -> None:
        self.app = app
        self._routes = dict(routes)
        self._retry_after = retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = (
            self._routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        )
        if handler is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await handler(Request(scope, receive))
        except Exception as exc:  # answered (and logged when unexpected) as FastAPI's handlers would
            response = response_for(exc, retry_after=self._retry_after)
        await response(scope, receive, send)
