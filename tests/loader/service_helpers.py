"""Running a `LoaderService` on the in-process fake edgeHub, and reading what it reported."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from edge_shared.edgehub import Handlers
from edge_shared.messages import OUTPUT_MODEL, OUTPUT_STATUS
from loader_module.clock import Clock
from loader_module.methods import LoaderMethods
from loader_module.service import LoaderService
from loader_module.settings import LoaderSettings
from tests.fake_edgehub import FakeEdgeHubClient


@asynccontextmanager
async def running_loader(
    settings: LoaderSettings, hub: FakeEdgeHubClient, http: httpx.AsyncClient, clock: Clock | None = None
) -> AsyncIterator[LoaderService]:
    service = LoaderService(settings, hub, http, clock=clock)
    methods = LoaderMethods(service)
    await service.start(
        Handlers(
            on_desired_patch=service.on_desired_patch, on_method=methods.handle, on_input=service.on_input
        )
    )
    try:
        yield service
    finally:
        await service.stop()
        hub.connected = False


def update(hub: FakeEdgeHubClient) -> dict[str, Any]:
    value = hub.reported.get("ModelUpdate", {})
    assert isinstance(value, dict)
    return value


def is_state(hub: FakeEdgeHubClient, state: str, version: str | None = None) -> bool:
    current = update(hub)
    return current.get("state") == state and (version is None or current.get("version") == version)


async def wait_state(
    hub: FakeEdgeHubClient, state: str, version: str | None = None, within: float = 20
) -> None:
    await hub.wait_until(lambda: is_state(hub, state, version), within=within)


def announcements(hub: FakeEdgeHubClient) -> list[dict[str, Any]]:
    return [json.loads(message.data) for message in hub.outputs_to(OUTPUT_MODEL)]


def status_events(hub: FakeEdgeHubClient) -> list[dict[str, Any]]:
    return [json.loads(message.data) for message in hub.outputs_to(OUTPUT_STATUS)]
