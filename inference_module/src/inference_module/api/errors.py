"""The one place where errors become HTTP answers: status table, error body, `Retry-After`."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic_core import to_json
from starlette.exceptions import HTTPException as StarletteHTTPException

from inference_module import errors

logger = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.InferenceError], int] = {
    errors.EmptyBodyError: 400,
    errors.InvalidImageError: 400,
    errors.ImageTooSmallError: 400,
    errors.BodyTooLargeError: 413,
    errors.BodyTimeoutError: 408,
    # nginx's "client closed request": never sent (nobody is listening), but metrics tell it apart.
    errors.ClientDisconnectedError: 499,
    errors.TooManyPixelsError: 413,
    errors.UnsupportedMediaTypeError: 415,
    errors.UnsupportedImageFormatError: 415,
    errors.InputError: 400,
    errors.UnauthorizedError: 401,
    errors.AccessError: 403,
    errors.UnavailableError: 503,
    # An operator's reload that cannot happen in the current state (including a manifest that names a
    # path outside the root: the repository is wrong, not the request); the old model keeps serving.
    errors.ModelError: 409,
    errors.InferenceError: 500,
}


# 404 -> "not_found", 405 -> "method_not_allowed": the same snake_case codes as our own errors.
_HTTP_CODES = {
    status.value: status.phrase.lower().replace(" ", "_").replace("-", "_") for status in HTTPStatus
}


def status_for(exc: errors.InferenceError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500


# A client too slow to send its body is not kept waiting for the next request. (A 413 keeps the
# connection: the server skips the rest of the body without holding it, and the client reads the answer.)
_CLOSE_AFTER = frozenset({408})


def error_response(status: int, code: str, message: str, *, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if status in _CLOSE_AFTER:
        headers["Connection"] = "close"
    body = to_json({"error": {"code": code, "message": message}})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def response_for(exc: Exception, *, retry_after: int) -> Response:
    """The answer to any exception a route raised: `{"error": {"code", "message"}}`; 503s say when to
    retry. FastAPI's handlers and the hot path (`api.hot`) both answer through this."""
    if isinstance(exc, errors.InferenceError):
        status = status_for(exc)
        if status >= 500 and status != 503:
            logger.error("request failed: %s", exc, exc_info=exc)
        response = error_response(
            status, exc.code, str(exc), retry_after=retry_after if status == 503 else None
        )
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
            for error in exc.errors()
        )
        return error_response(422, "invalid_request", problems or "invalid request")
    if isinstance(exc, StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))
    logger.error("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", "internal error; see the module's log")


def install_error_handlers(app: FastAPI, *, retry_after: int) -> None:
    """Every error leaves through `response_for`."""

    async def handle(_: Request, exc: Exception) -> Response:
        return response_for(exc, retry_after=retry_after)

    for kind in (errors.InferenceError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handle)
