"""Downloads through faults, end to end in the loader service (fake edgeHub, real Azurite over HTTPS):
cuts and resets at random offsets, 5xx/429 storms, a 64 kB/s drip. Every update must end `ready`
with the published bytes installed, and a resumed download fetches each byte about once."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_shared.repository import ModelRepository
from edge_tools.azurite import Azurite
from edge_tools.faultproxy import FaultProxy, Policy
from loader_module.edge import make_http_client
from loader_module.settings import LoaderSettings
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import desired_for, make_settings, model_zip
from tests.loader.service_helpers import running_loader, status_events, update, wait_state
from tests.loader.test_server_errors import Served, flaky_server  # noqa: F401  (fixture)
from tests.reliability.invariants import assert_consistent, rng_for

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

CUT_RUNS = 20
STORM_RUNS = 10
#: TLS handshake (certificate chain) plus response headers, per connection, counted by the proxy.
PER_CONNECTION_OVERHEAD = 8 * 1024
RETRYABLE = [500, 502, 503, 504, 408, 429]
DRIP_BPS = 64 * 1024


def _publish(azurite: Azurite, data: bytes, version: str, port: int) -> dict[str, Any]:
    name = f"reliability/{uuid.uuid4().hex}/{version}.zip"
    azurite.upload("models", name, data)
    return desired_for(data, azurite.sas_url("models", name, port=port), f"{version}.zip")


def _installed_from(root: Path, version: str, data: bytes) -> None:
    manifest = ModelRepository(root).read_manifest(version)
    assert manifest.source_sha256 == hashlib.sha256(data).hexdigest()
    assert assert_consistent(root, installed_before=True) == version


@pytest.fixture
def settings(model_root: Path, azurite: Azurite) -> LoaderSettings:
    return make_settings(model_root, ca_file=azurite.ca_file, download_attempts=6, keep_versions=2)


@pytest.fixture
async def client(settings: LoaderSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client(settings) as http:
        yield http


async def test_cuts_at_random_offsets_resume_verify_and_fetch_each_byte_once(
    azurite: Azurite,
    settings: LoaderSettings,
    client: httpx.AsyncClient,
    soak_factor: int,
    reliability_seed: int,
) -> None:
    rng = rng_for(reliability_seed, "download-cuts")
    worst, connections = 0.0, 0
    hub = FakeEdgeHubClient()
    async with running_loader(settings, hub, client):
        for run in range(CUT_RUNS * soak_factor):
            data = model_zip("onnx", padding=rng.randint(128 * 1024, 1024 * 1024))
            faults = [
                Policy(cut_after=at) if rng.random() < 0.7 else Policy(reset_after=at)
                for at in (rng.randint(1, len(data)) for _ in range(rng.randint(1, 3)))
            ]
            version = f"cut-{run}"
            context = f"seed {reliability_seed}, run {run}, size {len(data)}, faults {faults}"
            # A fresh proxy (port) per run: the loader's pooled connection to the last one is not reused.
            with FaultProxy(azurite.port, [*faults, Policy()]) as proxy:
                await hub.push_desired(_publish(azurite, data, version, proxy.port))
                await wait_state(hub, "ready", version, within=60)
            fetched = status_events(hub)[-1]["bytesDownloaded"]
            assert fetched <= 1.05 * len(data), context
            # Wire bytes: a FIN cut loses nothing the client had; a RST may drop what was in flight.
            wire_budget = 1.05 * len(data) + proxy.connections * PER_CONNECTION_OVERHEAD
            if all(f.reset_after is None for f in faults):
                assert proxy.downstream_bytes <= wire_budget, context
            assert proxy.connections <= len(faults) + 1, context
            _installed_from(settings.model_root, version, data)
            worst = max(worst, fetched / len(data))
            connections += proxy.connections
    runs = CUT_RUNS * soak_factor
    # Most faults land inside a download (an offset past the end of a resumed body does not fire).
    assert connections >= runs * 3 // 2, f"only {connections} connections for {runs} downloads"
    assert worst >= 1.0
    logger.info("cuts: %d downloads, %d connections, worst fetched/size %.4f", runs, connections, worst)


async def test_server_error_storms_then_success_install(
    flaky_server: Served,  # noqa: F811  (the imported fixture)
    model_root: Path,
    soak_factor: int,
    reliability_seed: int,
) -> None:
    rng = rng_for(reliability_seed, "storms")
    settings = make_settings(model_root, ca_file=flaky_server.ca_file, download_attempts=6, keep_versions=2)
    hub = FakeEdgeHubClient()
    async with make_http_client(settings) as http, running_loader(settings, hub, http):
        for run in range(STORM_RUNS * soak_factor):
            storm = [rng.choice(RETRYABLE) for _ in range(rng.randint(1, settings.download_attempts - 1))]
            data = model_zip("tflite", padding=rng.randint(1, 300_000))
            flaky_server.app.data = data
            flaky_server.app.statuses = list(storm)
            flaky_server.app.requests.clear()
            version = f"storm-{run}"
            await hub.push_desired(desired_for(data, flaky_server.url, f"{version}.zip"))
            await wait_state(hub, "ready", version, within=30)
            context = f"seed {reliability_seed}, run {run}, storm {storm}"
            assert len(flaky_server.app.requests) == len(storm) + 1, context
            assert update(hub)["attempt"] == len(storm) + 1, context
            assert status_events(hub)[-1]["bytesDownloaded"] == len(data), context
            _installed_from(model_root, version, data)


async def _drip(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient, data: bytes
) -> FakeEdgeHubClient:
    """Install `data` through a 64 kB/s link; returns the hub with every reported patch."""
    with FaultProxy(azurite.port, [Policy(throttle_bps=DRIP_BPS)]) as proxy:
        hub = FakeEdgeHubClient()
        async with running_loader(settings, hub, client):
            started = time.monotonic()
            await hub.push_desired(_publish(azurite, data, "drip", proxy.port))
            await wait_state(hub, "ready", "drip", within=120)
            elapsed = time.monotonic() - started
    assert elapsed >= 0.9 * len(data) / DRIP_BPS  # the drip was in effect
    assert proxy.connections == 1
    return hub


def _download_progress(hub: FakeEdgeHubClient) -> list[int]:
    return [
        int(p["ModelUpdate"]["bytesDone"])
        for p in hub.reported_patches
        if "ModelUpdate" in p
        and p["ModelUpdate"].get("state") == "downloading"
        and p["ModelUpdate"].get("bytesDone") is not None
    ]


async def test_slow_drip_at_64_kb_per_second_completes(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    data = model_zip("onnx", padding=640 * 1024)  # ~10 s at 64 kB/s
    hub = await _drip(azurite, settings, client, data)
    done = _download_progress(hub)
    assert done == sorted(done) and done[0] == 0 and done[-1] == len(data), done
    assert status_events(hub)[-1]["bytesDownloaded"] == len(data)
    _installed_from(settings.model_root, "drip", data)


async def test_slow_drip_reports_progress_while_bytes_flow(
    azurite: Azurite, model_root: Path, client: httpx.AsyncClient
) -> None:
    settings = make_settings(model_root, ca_file=azurite.ca_file, progress_interval=0.5)
    data = model_zip("onnx", padding=384 * 1024)  # ~6 s at 64 kB/s: about 12 progress intervals
    hub = await _drip(azurite, settings, client, data)
    done = _download_progress(hub)
    assert any(0 < d < len(data) for d in done), f"no progress between 0 and the end: {done}"
