"""App factory and lifespan: every resource (threads, models, edgeHub) is owned by the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from edge_shared.edgehub import EdgeHubClient
from edge_shared.reported import Runtime
from inference_module.api.body import BodyBudget, BodyLimits
from inference_module.api.errors import install_error_handlers
from inference_module.api.hot import HotRoutes
from inference_module.api.routes import build_routes
from inference_module.api.state import AppState
from inference_module.dispatch import Dispatcher
from inference_module.edge import EdgeLink
from inference_module.failing import FailureStreak
from inference_module.fallback import load_at_startup
from inference_module.imaging import ImageLimits, warm_up_decoder
from inference_module.metrics import Metrics
from inference_module.runtimes import default_registry
from inference_module.runtimes.base import DetectorFactory
from inference_module.service import ModelService
from inference_module.settings import InferenceSettings
from inference_module.slot import ModelSlot

if TYPE_CHECKING:
    from inference_module.workers.follower import FollowerLink
    from inference_module.workers.pool import WorkerPool

logger = logging.getLogger(__name__)


def create_app(
    settings: InferenceSettings,
    *,
    registry: Mapping[Runtime, DetectorFactory] | None = None,
    edgehub: EdgeHubClient | None = None,
    peers: WorkerPool | None = None,
    follower: FollowerLink | None = None,
) -> FastAPI:
    """The inference app. `registry` replaces the runtimes and `edgehub` the Azure client (tests).
    With several workers, the leader's app gets its `peers` and each follower's app its `follower` link
    (no edgeHub, no model of its own: the leader gives it the serving one)."""
    metrics = Metrics(workers=settings.workers)
    slot = ModelSlot()
    service = ModelService(settings, slot, metrics, registry or default_registry())
    state = AppState(
        settings=settings,
        slot=slot,
        metrics=metrics,
        service=service,
        dispatcher=Dispatcher(settings.pipeline_threads, settings.max_queue, metrics),
        limits=ImageLimits(
            max_pixels=settings.max_image_pixels,
            min_side=settings.min_image_side,
            max_decoded_bytes=settings.max_decoded_bytes,
            large_decode_bytes=settings.large_decode_bytes,
        ),
        body_limits=BodyLimits(settings.max_image_bytes, settings.body_timeout_seconds),
        body_budget=BodyBudget(settings.max_body_bytes_in_flight, metrics.body_bytes),
        failures=FailureStreak(service.tell_refused, settings.reject_after_failures),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            state.dispatcher.start()
            stack.callback(state.dispatcher.stop)
            stack.callback(slot.close)
            await asyncio.to_thread(warm_up_decoder)
            if follower is not None:
                await follower.start(service, slot, settings.load_timeout_seconds, settings.workers)
                stack.push_async_callback(follower.stop)
                yield
                return
            if peers is not None:
                service.attach_peers(peers)
            link = EdgeLink(edgehub or _azure_client(), service, slot) if settings.edgehub else None
            if link is not None:
                link.watch()  # before the first load: a refusal at start is told once connected
            await load_at_startup(service)
            if peers is not None:
                await peers.start(service, slot)
                stack.push_async_callback(peers.stop)
            if link is not None:
                await link.start()
                stack.push_async_callback(link.stop)
            else:
                logger.info("running standalone: swaps only through POST /model/reload")
            yield

    # Swagger UI and ReDoc from the fastapi-offline package, not a CDN: devices are often offline.
    app = FastAPIOffline(
        static_url="/docs-assets",
        title="edge-model-loader inference",
        summary="Object detection with ONNX Runtime and TFLite models, swapped without downtime.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.inference = state
    install_error_handlers(app, retry_after=settings.retry_after_seconds)
    routes = build_routes(state)
    app.include_router(routes.router)
    app.add_middleware(HotRoutes, routes=routes.hot, retry_after=settings.retry_after_seconds)
    return app


def _azure_client() -> EdgeHubClient:
    from edge_shared.azure_edgehub import AzureEdgeHubClient

    return AzureEdgeHubClient()
