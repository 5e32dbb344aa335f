"""What a hostile or careless client cannot do to the API: skew metrics, reload cross-site, need a CDN."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from edge_shared.scoring import ScoreResponse
from edge_tools.fixtures import FixtureCatalog
from inference_module.api import create_app
from tests.inference.helpers import install_model, serve
from tests.inference.test_api import settings_for

pytestmark = pytest.mark.integration
POLLS = 200


async def score_lines(client: httpx.AsyncClient) -> list[str]:
    text = (await client.get("/metrics")).text
    return [line for line in text.splitlines() if line.startswith("inference_requests_total{")]


async def hang_up_mid_body(url: str) -> None:
    """Announce a 100 kB image, send 1 kB of it, close the connection."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
        + b"\x89PNG" * 256
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    del reader


async def test_a_client_hanging_up_mid_body_is_counted_apart_never_as_a_500(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    async with serve(create_app(settings_for(model_root))) as url, httpx.AsyncClient(base_url=url) as client:
        for _ in range(3):
            await hang_up_mid_body(url)
        lines: list[str] = []
        for _ in range(POLLS):  # the server notices the hang-ups on its own time
            lines = await score_lines(client)
            if sum(float(line.rsplit(" ", 1)[1]) for line in lines) >= 3:
                break
            await asyncio.sleep(0.01)
        assert lines == ['inference_requests_total{model_version="none",route="/score",status="499"} 3.0'], (
            lines
        )
        metrics = (await client.get("/metrics")).text
        assert 'inference_client_disconnects_total{route="/score"} 3.0' in metrics


@pytest.mark.parametrize("fmt", ["MPO", "WEBP"])
async def test_camera_mpo_and_webp_images_are_scored(
    model_root: Path, catalog: FixtureCatalog, fmt: str
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    photo = Image.open(catalog.path(catalog.image("one-square-png").file)).convert("RGB")
    buffer = io.BytesIO()
    photo.save(buffer, format=fmt, save_all=True, append_images=[Image.new("RGB", photo.size)], quality=95)
    async with serve(create_app(settings_for(model_root))) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/score", content=buffer.getvalue(), headers={"content-type": "image/jpeg"}
        )
    assert response.status_code == 200, response.text
    assert len(ScoreResponse.model_validate_json(response.content).detections) == 1


async def test_docs_load_every_asset_from_the_module_itself(model_root: Path) -> None:
    """An offline device must still show /docs and /redoc: no CDN, every script and style served here."""
    async with serve(create_app(settings_for(model_root))) as url, httpx.AsyncClient(base_url=url) as client:
        for path, bundle in (("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc")):
            page = await client.get(path)
            assert page.status_code == 200
            assert "/openapi.json" in page.text
            assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
            assert any(asset.endswith(".js") for asset in assets), page.text
            scripts = ""
            for asset in assets:
                assert asset.startswith("/"), f"{path}: {asset} is not served by the module"
                fetched = await client.get(asset)
                assert fetched.status_code == 200 and len(fetched.content) > 1000, asset
                if asset.endswith(".js"):
                    scripts += fetched.text
            assert bundle in scripts
