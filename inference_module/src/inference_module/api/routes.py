"""HTTP routes (architecture §7). Translation only: HTTP in, calls to the pipeline and service, bytes out."""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import RootModel
from pydantic_core import to_json

from edge_shared.scoring import AvaScoreResponse, ErrorBody, ModelInfo, ScoreResponse
from inference_module.api.body import limited_body
from inference_module.api.errors import status_for
from inference_module.api.guard import check_mutation_allowed
from inference_module.api.hot import Handler
from inference_module.api.query import parse_score_query, score_parameters
from inference_module.api.state import AppState
from inference_module.errors import (
    ClientDisconnectedError,
    InferenceError,
    ModelFailedError,
    NoModelError,
    UnsupportedMediaTypeError,
)
from inference_module.imaging import media_type_accepted
from inference_module.pipeline import ScoreQuery, ScoreResult, run_pipeline
from inference_module.settings import InferenceSettings
from inference_module.slot import LoadedModel, ModelIdentity


class AnyScoreResponse(RootModel[ScoreResponse | AvaScoreResponse]):
    """`format=native` (default) or `format=ava`."""


_IMAGE_SCHEMA = {"type": "string", "format": "binary"}
IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The raw image bytes: JPEG (MPO: its first frame), PNG, BMP or WebP.",
        "content": {
            media: {"schema": _IMAGE_SCHEMA}
            for media in ("image/jpeg", "image/png", "image/bmp", "image/webp", "application/octet-stream")
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Empty, undecodable or too small image."},
    408: {"model": ErrorBody, "description": "The body did not arrive in time."},
    413: {"model": ErrorBody, "description": "Body, pixel count or decoding cost over the limits."},
    415: {"model": ErrorBody, "description": "Content-Type or image format not supported."},
    422: {"model": ErrorBody, "description": "Invalid query parameters."},
    503: {
        "model": ErrorBody,
        "description": "No model loaded, or too many requests, bodies or large decodes at once.",
    },
}


@dataclass(frozen=True)
class Routes:
    router: APIRouter
    #: The scoring handlers by path, for `api.hot.HotRoutes` (also registered on `router`).
    hot: Mapping[str, Handler]


def build_routes(state: AppState) -> Routes:
    """Routes bound to one app's state (a closure, not a dependency: FastAPI runs sync dependencies
    in a thread, which would cost a second thread hop per request)."""
    settings: InferenceSettings = state.settings
    router = APIRouter()
    page = resources.files("inference_module.api").joinpath("static/index.html").read_bytes()

    async def score(request: Request, query: ScoreQuery, route: str) -> Response:
        started = time.perf_counter()
        status, version = 500, "none"
        try:
            if not media_type_accepted(request.headers.get("content-type")):
                raise UnsupportedMediaTypeError("send the image as image/* or application/octet-stream")
            if state.slot.current is None:
                raise NoModelError("no model is loaded yet")
            async with limited_body(request, state.body_limits, state.body_budget) as data:
                result: ScoreResult = await state.dispatcher.run(
                    run_pipeline, state.slot, data, query, state.limits, settings.annotated_jpeg_quality
                )
            status, version = 200, result.model_version
            state.failures.succeeded(version)
            state.metrics.pipeline.labels(model_version=version).observe(result.pipeline_seconds)
            return Response(result.body, media_type=result.media_type)
        except InferenceError as exc:
            status = status_for(exc)
            if isinstance(exc, ClientDisconnectedError):
                state.metrics.client_disconnects.labels(route=route).inc()
            elif isinstance(exc, ModelFailedError):
                version = exc.version
                await state.failures.failed(exc.version)
            raise
        finally:
            labels = {"route": route, "status": str(status), "model_version": version}
            state.metrics.requests.labels(**labels).inc()
            state.metrics.latency.labels(**labels).observe(time.perf_counter() - started)

    @router.post(
        "/score",
        summary="Detect objects in an image",
        response_model=None,
        responses={200: {"model": AnyScoreResponse, "description": "Detections."}, **ERRORS},
        openapi_extra={**IMAGE_BODY, "parameters": score_parameters(settings, annotated=False)},
    )
    async def score_json(request: Request) -> Response:
        query = parse_score_query(request.query_params, settings, annotated=False)
        return await score(request, query, "/score")

    @router.post(
        "/score/annotated",
        summary="The image as JPEG with the detections drawn",
        response_model=None,
        responses={
            200: {"content": {"image/jpeg": {"schema": _IMAGE_SCHEMA}}, "description": "Annotated JPEG."},
            **ERRORS,
        },
        openapi_extra={**IMAGE_BODY, "parameters": score_parameters(settings, annotated=True)},
    )
    async def score_annotated(request: Request) -> Response:
        query = parse_score_query(request.query_params, settings, annotated=True)
        return await score(request, query, "/score/annotated")

    @router.get(
        "/model",
        summary="The model serving now",
        response_model=None,
        responses={200: {"model": ModelInfo}, 503: ERRORS[503]},
    )
    async def get_model() -> Response:
        model = state.slot.current
        if model is None:
            raise NoModelError("no model is loaded yet")
        return _json(model_info(model))

    @router.post(
        "/model/reload",
        summary="Reload the version `current` names (same swap path as a routed message)",
        response_model=None,
        responses={
            200: {"model": ModelInfo},
            401: {
                "model": ErrorBody,
                "description": "INFERENCE_API_TOKEN is set: bearer token missing or wrong.",
            },
            403: {"model": ErrorBody, "description": "A browser's cross-site or form request."},
            409: {
                "model": ErrorBody,
                "description": "The swap could not happen; the old model keeps serving: nothing installed "
                "(`no_current_model`), a manifest naming a path outside the root (`unsafe_path`), or the "
                "model failed to load (`load_failed`, `load_timeout`, `checksum_mismatch`, "
                "`insufficient_memory`), or (several workers) the leading worker did not answer "
                "(`worker_failed`).",
            },
            503: {
                "model": ErrorBody,
                "description": "A concurrent swap that had to unload first failed: nothing is loaded.",
            },
        },
    )
    async def reload_model(request: Request) -> Response:
        check_mutation_allowed(request.headers, settings.api_token)
        await state.service.load_current("reload")
        model = state.slot.current
        if model is None:  # a concurrent preserve-memory swap failed after unloading
            raise NoModelError("no model is loaded")
        return _json(model_info(model))

    @router.get("/health/live", summary="Liveness: the process answers")
    @router.get("/v2/health/live", summary="Liveness (Open Inference Protocol path)")
    async def live() -> Response:
        return _json({"live": True})

    @router.get(
        "/health/ready",
        summary="Readiness: 200 only while a model is loaded",
        responses={503: ERRORS[503]},
    )
    @router.get(
        "/v2/health/ready",
        summary="Readiness (Open Inference Protocol path)",
        responses={503: ERRORS[503]},
    )
    async def ready() -> Response:
        model = state.slot.current
        if model is None:
            raise NoModelError("no model is loaded yet")
        return _json({"ready": True, "model_version": model.identity.version})

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/", summary="Upload page", response_class=HTMLResponse)
    async def upload_page() -> Response:
        return HTMLResponse(page)

    return Routes(router, {"/score": score_json, "/score/annotated": score_annotated})


def model_info(model: LoadedModel) -> dict[str, Any]:
    identity: ModelIdentity = model.identity
    return ModelInfo(
        version=identity.version,
        file_name=identity.file_name,
        runtime=identity.runtime,
        input_shape=list(model.detector.metadata.input_shape),
        labels_count=len(model.labels),
        labels_source=identity.labels_source,
        loaded_at=identity.loaded_at,
        sha256=identity.sha256,
    ).model_dump(mode="json")


def _json(body: Any) -> Response:
    return Response(to_json(body), media_type="application/json")
