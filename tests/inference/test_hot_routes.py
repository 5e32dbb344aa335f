"""`HotRoutes`: the scoring paths answered before FastAPI's stack, with the same error answers."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from inference_module.api.hot import HotRoutes
from inference_module.errors import NoModelError


class Inner:
    """The app behind the middleware (FastAPI in production): records what reached it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(f"{scope['method']} {scope['path']}")
        await Response(b"inner", status_code=200)(scope, receive, send)


async def _echo(request: Request) -> Response:
    return Response(await request.body() + b"|" + request.url.query.encode())


async def _no_model(request: Request) -> Response:
    del request
    raise NoModelError("no model is loaded yet")


async def _broken(request: Request) -> Response:
    del request
    raise RuntimeError("a bug")


def _client(inner: Inner) -> httpx.AsyncClient:
    app = HotRoutes(inner, routes={"/score": _echo, "/no": _no_model, "/bug": _broken}, retry_after=7)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://module")


async def test_a_post_to_a_hot_path_is_answered_by_its_handler_alone() -> None:
    inner = Inner()
    async with _client(inner) as client:
        answer = await client.post("/score?threshold=0.3", content=b"image")
    assert (answer.status_code, answer.content) == (200, b"image|threshold=0.3")
    assert inner.paths == []


async def test_other_methods_and_paths_reach_the_app_behind() -> None:
    inner = Inner()
    async with _client(inner) as client:
        assert (await client.get("/score")).content == b"inner"
        assert (await client.post("/score/")).content == b"inner"
        assert (await client.post("/model/reload")).content == b"inner"
    assert inner.paths == ["GET /score", "POST /score/", "POST /model/reload"]


async def test_domain_errors_leave_with_their_status_code_and_retry_after() -> None:
    async with _client(Inner()) as client:
        answer = await client.post("/no")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "7"
    assert answer.json() == {"error": {"code": "no_model", "message": "no model is loaded yet"}}


async def test_an_unexpected_error_is_a_logged_500_not_a_dropped_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="inference_module.api.errors"):
        async with _client(Inner()) as client:
            answer = await client.post("/bug")
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"
    assert any(record.exc_info and "a bug" in str(record.exc_info[1]) for record in caplog.records)
