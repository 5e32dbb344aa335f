"""The subset of IoT Hub's service REST API the publish CLI and tests use, over HTTPS.

Authorised by a service SAS token (`skn=iothubowner`, signed with the service key); direct-method calls
are also accepted from modules (their own SAS plus `x-ms-edge-moduleId`), as edgeHub serves
`invoke_method` on port 443. Errors are mapped to HTTP in `_error_handlers` only.
"""

import logging
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgehub_sim.errors import AuthError, MethodError, TwinPatchError, UnknownModule
from edgehub_sim.hub import Hub
from edgehub_sim.identity import SERVICE_KEY_NAME
from edgehub_sim.methods import MAX_TIMEOUT_SECS
from edgehub_sim.sas import parse_token, verify_token

logger = logging.getLogger(__name__)


class MethodCall(BaseModel):
    """Body of `POST .../methods` (IoT Hub's CloudToDeviceMethod)."""

    methodName: str = Field(min_length=1)
    payload: Any = None
    responseTimeoutInSeconds: float = Field(default=30, gt=0, le=MAX_TIMEOUT_SECS)
    connectTimeoutInSeconds: float = Field(default=0, ge=0, le=MAX_TIMEOUT_SECS)


class TwinProperties(BaseModel):
    """`properties` of a twin PATCH: only `desired` may be changed from the service side."""

    desired: dict[str, Any] = Field(default_factory=dict)


class TwinPatch(BaseModel):
    """Body of `PATCH /twins/{d}/modules/{m}`."""

    properties: TwinProperties = Field(default_factory=TwinProperties)
    tags: dict[str, Any] | None = None


def create_service_app(hub: Hub, service_hosts: list[str]) -> Starlette:
    """The service API app; `service_hosts` are the `sr` values a service token may name."""
    identity = hub.identity

    def authorize(request: Request, allow_module: bool = False) -> None:
        token = request.headers.get("authorization")
        if not token:
            raise AuthError("no Authorization header")
        parsed = parse_token(token)
        if parsed.key_name == SERVICE_KEY_NAME:
            resource = next(
                (h for h in service_hosts if h.lower() == parsed.resource.rstrip("/").lower()),
                None,
            )
            if resource is None:
                raise AuthError("service token is for another hub")
            verify_token(token, identity.service_key, resource)
            return
        caller = request.headers.get("x-ms-edge-moduleid", "")
        device, _, module = caller.partition("/")
        if not allow_module or device != identity.device_id or module not in identity.module_keys:
            raise AuthError("not a service token and no calling module")
        verify_token(token, identity.key(module), identity.module_resource(module))

    def target(request: Request) -> str:
        if request.path_params["device"] != identity.device_id:
            raise UnknownModule(f"no device {request.path_params['device']!r}")
        module: str = request.path_params["module"]
        if module not in identity.module_keys:
            raise UnknownModule(f"no module {module!r}")
        return module

    async def get_twin(request: Request) -> JSONResponse:
        authorize(request)
        return JSONResponse(hub.service_twin(target(request)))

    async def patch_twin(request: Request) -> JSONResponse:
        authorize(request)
        module = target(request)
        patch = TwinPatch.model_validate_json(await request.body())
        if patch.properties.desired:
            hub.set_desired(module, patch.properties.desired)
        return JSONResponse(hub.service_twin(module))

    async def invoke(request: Request) -> JSONResponse:
        authorize(request, allow_module=True)
        module = target(request)
        call = MethodCall.model_validate_json(await request.body())
        result = await hub.invoke_method(
            module,
            call.methodName,
            call.payload,
            call.responseTimeoutInSeconds,
            call.connectTimeoutInSeconds,
        )
        return JSONResponse({"status": result.status, "payload": result.payload})

    async def messages(request: Request) -> JSONResponse:
        authorize(request)
        sink: Literal["upstream", "module"] | None
        raw = request.query_params.get("sink")
        if raw not in (None, "upstream", "module"):
            return JSONResponse({"message": "sink must be upstream or module"}, status_code=400)
        sink = "upstream" if raw == "upstream" else "module" if raw == "module" else None
        return JSONResponse([record.to_json() for record in hub.log.snapshot(sink)])

    return Starlette(
        routes=[
            Route("/twins/{device}/modules/{module}", get_twin, methods=["GET"]),
            Route("/twins/{device}/modules/{module}", patch_twin, methods=["PATCH"]),
            Route("/twins/{device}/modules/{module}/methods", invoke, methods=["POST"]),
            Route("/sim/messages", messages, methods=["GET"]),
        ],
        exception_handlers=_error_handlers(),
    )


def _error_handlers() -> dict[Any, Any]:
    """The one place simulator errors become HTTP responses."""

    async def auth(_: Request, exc: Exception) -> Response:
        logger.warning("service API request refused: %s", exc)
        return _error(401, 401002, "Unauthorized")

    async def unknown(_: Request, exc: Exception) -> Response:
        return _error(404, 404001, str(exc))

    async def method(_: Request, exc: Exception) -> Response:
        status = exc.status if isinstance(exc, MethodError) else 500
        code = {404: 404103, 504: 504101}.get(status, status * 1000)
        return _error(status, code, str(exc))

    async def bad_request(_: Request, exc: Exception) -> Response:
        return _error(400, 400004, f"malformed request: {exc}")

    return {
        AuthError: auth,
        UnknownModule: unknown,
        MethodError: method,
        ValidationError: bad_request,
        TwinPatchError: bad_request,
    }


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"errorCode": code, "message": message}, status_code=status)
