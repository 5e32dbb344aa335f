"""Direct methods: `getStatus`, `rollback`, `retry`. Payloads are validated; errors are JSON bodies."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from edge_shared.edgehub import MethodRequest, MethodResponse
from edge_shared.names import Version
from loader_module.errors import LoaderError
from loader_module.service import LoaderService

logger = logging.getLogger(__name__)


class RollbackRequest(BaseModel):
    """`{"version": "..."}`, or nothing for the version installed before the current one."""

    model_config = ConfigDict(extra="forbid")

    version: Version | None = None


def _error(status: int, code: str, message: str) -> MethodResponse:
    return MethodResponse(status=status, payload={"error": {"code": code, "message": message}})


class LoaderMethods:
    """Translates method calls to service calls and back (no logic of its own)."""

    def __init__(self, service: LoaderService) -> None:
        self._service = service

    async def handle(self, request: MethodRequest) -> MethodResponse:
        logger.info("direct method called", extra={"method": request.name})
        if request.name == "getStatus":
            return MethodResponse(status=200, payload=await self._service.status())
        if request.name == "rollback":
            return await self._rollback(request.payload)
        if request.name == "retry":
            await self._service.retry()
            return MethodResponse(status=202, payload=await self._service.status())
        return _error(404, "unknown_method", f"no method named {request.name!r}")

    async def _rollback(self, payload: Any) -> MethodResponse:
        try:
            body = RollbackRequest.model_validate(payload or {})
        except ValidationError:
            return _error(400, "invalid_request", 'expected {"version": "<installed version>"} or nothing')
        try:
            manifest = await self._service.rollback(body.version)
        except LoaderError as exc:
            return _error(409, str(exc.code), str(exc))
        return MethodResponse(
            status=200, payload={"version": manifest.version, "fileName": manifest.file_name}
        )
