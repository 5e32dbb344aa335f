"""The subset of IoT Hub's service REST API the publish CLI, the rollout tooling and tests use, over HTTPS.

Authorised by a service SAS token (`skn=iothubowner`, signed with the service key); direct-method calls
are also accepted from modules (their own SAS plus `x-ms-edge-moduleId`), as edgeHub serves
`invoke_method` on port 443. Errors are mapped to HTTP in `_error_handlers` only, in IoT Hub's shape:
an `iothub-errorcode` header and a body `{"Message": "ErrorCode:<code>;<text>", "ExceptionMessage": ...}`.
"""

import base64
import binascii
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgehub_sim.deployments.configurations import public
from edgehub_sim.deployments.query import parse_query
from edgehub_sim.deployments.throttle import WriteThrottle
from edgehub_sim.device_twins import check_if_match
from edgehub_sim.errors import (
    AuthError,
    HubRequestError,
    MethodError,
    TwinPatchError,
    UnknownDevice,
    UnknownModule,
)
from edgehub_sim.hub import Hub
from edgehub_sim.identity import SERVICE_KEY_NAME
from edgehub_sim.methods import MAX_TIMEOUT_SECS
from edgehub_sim.sas import parse_token, verify_token

logger = logging.getLogger(__name__)

#: `POST /devices/query` page size without `x-ms-max-item-count`, and the largest one accepted.
DEFAULT_PAGE = 100
MAX_PAGE = 1000


class MethodCall(BaseModel):
    """Body of `POST .../methods` (IoT Hub's CloudToDeviceMethod)."""

    methodName: str = Field(min_length=1)
    payload: Any = None
    responseTimeoutInSeconds: float = Field(default=30, gt=0, le=MAX_TIMEOUT_SECS)
    connectTimeoutInSeconds: float = Field(default=0, ge=0, le=MAX_TIMEOUT_SECS)


class TwinProperties(BaseModel):
    """`properties` of a twin PATCH: only `desired` may be changed from the service side."""

    model_config = ConfigDict(extra="ignore")

    desired: dict[str, Any] | None = None


class TwinPatch(BaseModel):
    """Body of `PATCH /twins/{d}[/modules/{m}]` (read-only twin fields the SDK echoes are ignored)."""

    model_config = ConfigDict(extra="ignore")

    properties: TwinProperties = Field(default_factory=TwinProperties)
    tags: dict[str, Any] | None = None


class QuerySpecification(BaseModel):
    """Body of `POST /devices/query`."""

    query: StrictStr


def create_service_app(
    hub: Hub,
    service_hosts: list[str],
    on_configurations_changed: Callable[[], None],
    throttle: WriteThrottle | None = None,
) -> Starlette:
    """The service API app; `service_hosts` are the `sr` values a service token may name;
    `on_configurations_changed` runs after a configuration is created, updated or deleted; `throttle`
    limits configuration writes (none by default)."""
    writes = throttle or WriteThrottle(None)
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
        if not allow_module or caller not in identity.keys:
            raise AuthError("not a service token and no calling module")
        device, module = identity.split_client_id(caller)
        verify_token(token, identity.key(module, device), identity.module_resource(module, device))

    def target(request: Request) -> tuple[str, str]:
        device = identity.require_device(request.path_params["device"])
        module: str = request.path_params["module"]
        if module not in identity.modules:
            raise UnknownModule(f"no module {module!r} on device {device!r}")
        return device, module

    async def get_device_twin(request: Request) -> JSONResponse:
        authorize(request)
        return JSONResponse(hub.device_twin(identity.require_device(request.path_params["device"])))

    async def patch_device_twin(request: Request) -> JSONResponse:
        authorize(request)
        device = identity.require_device(request.path_params["device"])
        patch = TwinPatch.model_validate_json(await request.body())
        hub.device_twins.patch(device, patch.tags, patch.properties.desired, request.headers.get("if-match"))
        hub.feed.bump()
        return JSONResponse(hub.device_twin(device))

    async def get_twin(request: Request) -> JSONResponse:
        authorize(request)
        device, module = target(request)
        return JSONResponse(hub.service_twin(module, device))

    async def patch_twin(request: Request) -> JSONResponse:
        authorize(request)
        device, module = target(request)
        patch = TwinPatch.model_validate_json(await request.body())
        check_if_match(request.headers.get("if-match"), hub.service_twin(module, device)["etag"])
        if patch.properties.desired:
            hub.set_desired(module, patch.properties.desired, device)
        return JSONResponse(hub.service_twin(module, device))

    async def invoke(request: Request) -> JSONResponse:
        authorize(request, allow_module=True)
        device, module = target(request)
        call = MethodCall.model_validate_json(await request.body())
        result = await hub.invoke_method(
            module,
            call.methodName,
            call.payload,
            call.responseTimeoutInSeconds,
            call.connectTimeoutInSeconds,
            device,
        )
        return JSONResponse({"status": result.status, "payload": result.payload})

    async def put_configuration(request: Request) -> JSONResponse:
        authorize(request)
        writes.admit()
        document, created = hub.configurations.put(
            request.path_params["id"], await request.body(), request.headers.get("if-match")
        )
        on_configurations_changed()
        return JSONResponse(public(document), status_code=201 if created else 200)

    async def get_configuration(request: Request) -> JSONResponse:
        authorize(request)
        return JSONResponse(public(hub.configurations.get(request.path_params["id"])))

    async def delete_configuration(request: Request) -> Response:
        authorize(request)
        writes.admit()
        hub.configurations.delete(request.path_params["id"], request.headers.get("if-match"))
        on_configurations_changed()
        return Response(status_code=204)

    async def list_configurations(request: Request) -> JSONResponse:
        authorize(request)
        raw = request.query_params.get("top")
        try:
            top = None if raw is None else int(raw)
        except ValueError:
            raise HubRequestError(400, "ArgumentInvalid", "top must be an integer") from None
        return JSONResponse([public(d) for d in hub.configurations.listing(top)])

    async def query(request: Request) -> JSONResponse:
        authorize(request)
        parsed = parse_query(QuerySpecification.model_validate_json(await request.body()).query)
        page = _page_size(request.headers.get("x-ms-max-item-count"))
        start = _continuation(request.headers.get("x-ms-continuation"))
        twins = (
            [hub.device_twin(d) for d in identity.devices]
            if parsed.collection == "devices"
            else hub.module_twins()
        )
        rows = parsed.run(twins)
        headers = {"x-ms-item-type": "twin" if parsed.fields is None else "raw"}
        if start + page < len(rows):
            headers["x-ms-continuation"] = base64.b64encode(f"offset:{start + page}".encode()).decode("ascii")
        return JSONResponse(rows[start : start + page], headers=headers)

    async def messages(request: Request) -> JSONResponse:
        authorize(request)
        sink: Literal["upstream", "module"] | None
        raw = request.query_params.get("sink")
        if raw not in (None, "upstream", "module"):
            raise HubRequestError(400, "ArgumentInvalid", "sink must be upstream or module")
        sink = "upstream" if raw == "upstream" else "module" if raw == "module" else None
        return JSONResponse([record.to_json() for record in hub.log.snapshot(sink)])

    return Starlette(
        routes=[
            Route("/twins/{device}", get_device_twin, methods=["GET"]),
            Route("/twins/{device}", patch_device_twin, methods=["PATCH"]),
            Route("/twins/{device}/modules/{module}", get_twin, methods=["GET"]),
            Route("/twins/{device}/modules/{module}", patch_twin, methods=["PATCH"]),
            Route("/twins/{device}/modules/{module}/methods", invoke, methods=["POST"]),
            Route("/configurations", list_configurations, methods=["GET"]),
            Route("/configurations/{id}", put_configuration, methods=["PUT"]),
            Route("/configurations/{id}", get_configuration, methods=["GET"]),
            Route("/configurations/{id}", delete_configuration, methods=["DELETE"]),
            Route("/devices/query", query, methods=["POST"]),
            Route("/sim/messages", messages, methods=["GET"]),
        ],
        exception_handlers=_error_handlers(),
    )


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    try:
        size = int(raw)
    except ValueError:
        raise HubRequestError(400, "ArgumentInvalid", "x-ms-max-item-count must be an integer") from None
    if not 1 <= size <= MAX_PAGE:
        raise HubRequestError(400, "ArgumentInvalid", f"x-ms-max-item-count must be between 1 and {MAX_PAGE}")
    return size


def _continuation(raw: str | None) -> int:
    if raw is None:
        return 0
    try:
        text = base64.b64decode(raw, validate=True).decode("ascii")
        kind, _, offset = text.partition(":")
        if kind != "offset":
            raise ValueError(text)
        return int(offset)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise HubRequestError(
            400, "ArgumentInvalid", "x-ms-continuation is not a token this hub issued"
        ) from None


def _error_handlers() -> dict[Any, Any]:
    """The one place simulator errors become HTTP responses."""

    async def auth(_: Request, exc: Exception) -> Response:
        logger.warning("service API request refused: %s", exc)
        return _error(401, "IotHubUnauthorizedAccess", "Unauthorized")

    async def unknown(_: Request, exc: Exception) -> Response:
        code = "DeviceNotFound" if isinstance(exc, UnknownDevice) else "ModuleNotFound"
        return _error(404, code, str(exc))

    async def method(_: Request, exc: Exception) -> Response:
        status = exc.status if isinstance(exc, MethodError) else 500
        code = {404: "DeviceNotOnline", 504: "GatewayTimeout"}.get(status, "ServerError")
        return _error(status, code, str(exc))

    async def bad_request(_: Request, exc: Exception) -> Response:
        return _error(400, "ArgumentInvalid", f"malformed request: {exc}")

    async def refused(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HubRequestError)
        response = _error(exc.status, exc.code, str(exc))
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    return {
        AuthError: auth,
        UnknownModule: unknown,
        MethodError: method,
        ValidationError: bad_request,
        TwinPatchError: bad_request,
        HubRequestError: refused,
    }


def _error(status: int, code: str, message: str) -> JSONResponse:
    """IoT Hub's error shape: `iothub-errorcode` header; body Message `ErrorCode:<code>;<text>`."""
    stamp = datetime.now(UTC).strftime("%m/%d/%Y %H:%M:%S")
    body = {
        "Message": f"ErrorCode:{code};{message}",
        "ExceptionMessage": f"Tracking ID:{secrets.token_hex(16)}-G:0-TimeStamp:{stamp}",
    }
    return JSONResponse(body, status_code=status, headers={"iothub-errorcode": code})
