"""The IoT Edge workload API on a unix socket per module, as `create_from_edge_environment()` calls it.

`GET /trust-bundle` gives the CA the SDK then trusts; `POST /modules/{m}/genid/{g}/sign` signs the SAS
string-to-sign with the module's key (the SDK never sees the key).
"""

import base64
import binascii
import logging
from collections.abc import Callable, Mapping

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edgehub_sim.sas import sign

logger = logging.getLogger(__name__)


class SignRequest(BaseModel):
    """Body of a sign request (the SDK sends it without a JSON content type)."""

    keyId: str
    algo: str
    data: str


def generation_id(module: str) -> str:
    """The generation id the simulator gives a module (its env file names it)."""
    return f"sim-{module}"


def create_workload_app(module: str, key: str, ca_pem: str) -> Starlette:
    """The workload API as one module sees it, on that module's own socket (or port): it signs for
    that module and generation alone, as IoT Edge does since 1.2.4 (one socket per module, the caller
    known by the socket it came in on). A request for any other module is 403."""
    return _workload_app(lambda _: (module, key), ca_pem)


def create_shared_workload_app(by_socket: Mapping[str, tuple[str, str]], ca_pem: str) -> Starlette:
    """One app behind every module socket of a fleet (one listener instead of one per module): the
    socket path a request came in on (the ASGI scope's `server`) names the (module, key) it signs for."""

    def resolve(request: Request) -> tuple[str, str] | None:
        server = request.scope.get("server")
        return None if not server else by_socket.get(str(server[0]))

    return _workload_app(resolve, ca_pem)


def _workload_app(resolve: Callable[[Request], tuple[str, str] | None], ca_pem: str) -> Starlette:
    async def trust_bundle(_: Request) -> JSONResponse:
        return JSONResponse({"certificate": ca_pem})

    async def sign_data(request: Request) -> JSONResponse:
        asked, genid = request.path_params["module"], request.path_params["genid"]
        caller = resolve(request)
        if caller is None:
            return JSONResponse({"message": "unknown workload socket"}, status_code=403)
        module, key = caller
        if asked != module or genid != generation_id(module):
            logger.warning(
                "workload socket of %r refused to sign for %r (generation %r)", module, asked, genid
            )
            return JSONResponse(
                {"message": f"this workload API serves module {module!r} only"}, status_code=403
            )
        try:
            body = SignRequest.model_validate_json(await request.body())
            data = base64.b64decode(body.data, validate=True)
        except (ValidationError, binascii.Error):
            return JSONResponse({"message": "malformed sign request"}, status_code=400)
        if body.algo != "HMACSHA256":
            return JSONResponse({"message": f"unsupported algo {body.algo!r}"}, status_code=400)
        return JSONResponse({"digest": sign(key, data)})

    return Starlette(
        routes=[
            Route("/trust-bundle", trust_bundle, methods=["GET"]),
            Route("/modules/{module}/genid/{genid}/sign", sign_data, methods=["POST"]),
        ]
    )
