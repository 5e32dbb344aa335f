"""Wiring: the service and its methods on an `EdgeHubClient`, run until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from pathlib import Path

import httpx

from edge_shared.edgehub import EdgeHubClient, Handlers
from edge_shared.redaction import redact_url
from loader_module.clock import Clock
from loader_module.methods import LoaderMethods
from loader_module.proxying import download_transport
from loader_module.service import LoaderService
from loader_module.settings import LoaderSettings

logger = logging.getLogger(__name__)


def make_http_client(settings: LoaderSettings) -> httpx.AsyncClient:
    """System CAs plus `LOADER_CA_FILE`; a read timeout that turns a stalled stream into a resume; the
    proxy from the settings (never httpx's `trust_env`). Redirects are followed by the downloader, which
    checks each one."""
    context = ssl.create_default_context()
    if settings.ca_file is not None:
        context.load_verify_locations(cafile=str(settings.ca_file))
    timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)
    if settings.proxy_url is not None:
        logger.info(
            "downloads go through a proxy",
            extra={"proxy": redact_url(settings.proxy_url), "no_proxy": settings.no_proxy},
        )
    transport = download_transport(context, settings.proxy_url, settings.no_proxy)
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)


async def beat_until(stop: asyncio.Event, path: Path, interval: float) -> None:
    """Renew `path`'s modification time every `interval` seconds until `stop`: a healthcheck that finds it
    old knows the loader's event loop is stuck or the loader never finished starting."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(_touch, path)
        except OSError as exc:  # a full or read-only /tmp must not stop the loader; the check will say
            logger.warning("cannot write the heartbeat file: %s", exc.strerror)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def _touch(path: Path) -> None:
    path.touch()
    os.utime(path)


async def run_loader(
    settings: LoaderSettings,
    edgehub: EdgeHubClient,
    stop: asyncio.Event,
    *,
    http: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Start, reconcile, serve patches and methods until `stop` is set, then park and disconnect."""
    async with http if http is not None else make_http_client(settings) as client:
        service = LoaderService(settings, edgehub, client, clock=clock)
        methods = LoaderMethods(service)
        try:
            await service.start(
                Handlers(
                    on_desired_patch=service.on_desired_patch,
                    on_method=methods.handle,
                    on_input=service.on_input,
                )
            )
            if started is not None:
                started.set()
            if settings.heartbeat_file is None:
                await stop.wait()
            else:
                await beat_until(stop, settings.heartbeat_file, settings.heartbeat_interval)
            logger.info("stopping")
        finally:
            await service.stop()
