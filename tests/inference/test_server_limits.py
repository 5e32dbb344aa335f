"""Connections that are slow, stalled or oversized on purpose: the module's own server limits hold.

Each test drives raw sockets against the module's real server configuration (`server.server_config`)
on loopback, with short limits so the bounds are reached quickly; every wait is bounded.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from edge_tools.fixtures import FixtureCatalog
from inference_module.api import create_app
from inference_module.settings import InferenceSettings
from tests.inference.helpers import install_model, serve
from tests.inference.test_api import settings_for

pytestmark = pytest.mark.integration
WAIT = 15.0
POLLS = 200


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def answer_then_close(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded in time)."""
    async with asyncio.timeout(WAIT):
        return await reader.read()


def limited(root: Path, **overrides: object) -> InferenceSettings:
    return settings_for(root, header_timeout_seconds=0.5, body_timeout_seconds=1.0, **overrides)


async def test_slowloris_connections_get_408_and_are_closed(model_root: Path) -> None:
    settings = limited(model_root)
    async with serve(create_app(settings), settings) as url:
        connections = [await connect(url) for _ in range(20)]
        for index, (_, writer) in enumerate(connections):
            if index % 2:  # half send part of their headers, half nothing at all
                writer.write(b"POST /score HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                await writer.drain()
        answers = await asyncio.gather(*(answer_then_close(reader) for reader, _ in connections))
        for _, writer in connections:
            writer.close()
        assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), answers
        async with httpx.AsyncClient(base_url=url) as client:  # and the server still answers
            assert (await client.get("/health/live")).status_code == 200


async def test_a_keep_alive_connection_gets_the_same_header_bound_for_its_next_request(
    model_root: Path,
) -> None:
    settings = limited(model_root)
    async with serve(create_app(settings), settings) as url:
        reader, writer = await connect(url)
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\nGET /health/live HTTP/1.1\r\n")
        await writer.drain()
        answer = await answer_then_close(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b"HTTP/1.1 408 " in answer


async def test_oversized_headers_get_431_and_normal_ones_pass(model_root: Path) -> None:
    settings = limited(model_root, max_header_bytes=8192)
    async with serve(create_app(settings), settings) as url:
        reader, writer = await connect(url)
        # 9 kB of headers, never finished (sent at once: unread bytes would make the close a reset)
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 9000 + b"\r\n")
        await writer.drain()
        answer = await answer_then_close(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 "), answer
        async with httpx.AsyncClient(base_url=url) as client:
            ok = await client.get("/health/live", headers={"X-Pad": "a" * 4000})
            assert ok.status_code == 200


async def body_bytes(client: httpx.AsyncClient) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("inference_request_body_bytes "):
            return float(line.split()[1])
    raise AssertionError("no inference_request_body_bytes gauge")


async def test_a_stalled_body_gets_408_and_its_bytes_are_released(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    settings = limited(model_root)
    async with serve(create_app(settings), settings) as url, httpx.AsyncClient(base_url=url) as client:
        reader, writer = await connect(url)
        writer.write(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"\0" * 1000)
        await writer.drain()
        answer = await answer_then_close(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b'"code":"body_timeout"' in answer
        assert await body_bytes(client) == 0
        metrics = (await client.get("/metrics")).text
        assert 'inference_requests_total{model_version="none",route="/score",status="408"} 1.0' in metrics


async def test_bodies_in_flight_past_the_budget_get_503_at_once(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    mib = 1024 * 1024
    settings = settings_for(model_root, max_image_bytes=mib, max_body_bytes_in_flight=mib)
    image = catalog.path(catalog.image("one-square-jpeg").file).read_bytes()
    async with serve(create_app(settings), settings) as url, httpx.AsyncClient(base_url=url) as client:
        reader, writer = await connect(url)  # announces 1 MiB, sends 1 kB of it
        writer.write(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % mib + b"\0" * 1024)
        await writer.drain()
        for _ in range(POLLS):  # until the server has read the announcement
            if await body_bytes(client) == mib:
                break
            await asyncio.sleep(0.01)
        refused = await client.post("/score", content=image)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "overloaded"
        assert refused.headers["retry-after"] == "1"
        writer.close()
        del reader
        for _ in range(POLLS):
            if await body_bytes(client) == 0:
                break
            await asyncio.sleep(0.01)
        assert (await client.post("/score", content=image)).status_code == 200


@pytest.mark.parametrize("rest", ["stalls", "completes"])
async def test_a_connection_answered_before_its_body_ended_does_not_stay_open(
    model_root: Path, rest: str
) -> None:
    """No model: 503 right after the headers. The client then stalls, or sends the rest and idles."""
    settings = limited(model_root)
    async with serve(create_app(settings), settings) as url:
        reader, writer = await connect(url)
        writer.write(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"\0" * 1000)
        await writer.drain()
        async with asyncio.timeout(WAIT):
            status = await reader.readline()
        assert status.startswith(b"HTTP/1.1 503 "), status
        if rest == "completes":
            writer.write(b"\0" * 99_000)
            await writer.drain()
        await answer_then_close(reader)  # closed by the server, within the bound
        writer.close()
