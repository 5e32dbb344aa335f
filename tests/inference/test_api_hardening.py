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
from edge_tools.bench.hostile_models import image_dependent_indices_onnx
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


CROSS_SITE = [
    ("another origin", {"Origin": "http://evil.example"}),
    ("another port", {"Origin": "http://127.0.0.1:1"}),
    ("fetch metadata", {"Sec-Fetch-Site": "cross-site"}),
    ("same site, other origin", {"Sec-Fetch-Site": "same-site"}),
    ("form post without origin", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("text/plain post", {"Content-Type": "text/plain"}),
    ("multipart post", {"Content-Type": "multipart/form-data; boundary=x"}),
]


async def test_state_changing_routes_refuse_simple_cross_site_requests(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    async with serve(create_app(settings_for(model_root))) as url, httpx.AsyncClient(base_url=url) as client:
        for name, headers in CROSS_SITE:
            refused = await client.post("/model/reload", headers=headers, content=b"x=1")
            assert refused.status_code == 403, name
            assert refused.json()["error"]["code"] == "cross_site_request", name
        metrics = (await client.get("/metrics")).text
        assert 'inference_model_swaps_total{source="reload"}' not in metrics  # nothing was reloaded
        same_origin = {"Origin": url, "Sec-Fetch-Site": "same-origin"}
        for headers in ({}, same_origin, {"Content-Type": "application/json"}):  # curl, the page, scripts
            assert (await client.post("/model/reload", headers=headers)).status_code == 200, headers


async def test_a_configured_token_guards_reload_and_scoring_stays_open(
    model_root: Path, catalog: FixtureCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    token = "s3cret-token-value"
    image = catalog.path(catalog.image("one-square-png").file).read_bytes()
    async with serve(create_app(settings_for(model_root, api_token=token))) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
                refused = await client.post("/model/reload", headers=headers)
                assert refused.status_code == 401, headers
                assert refused.json()["error"]["code"] == "unauthorized"
                assert refused.headers["www-authenticate"] == "Bearer"
            allowed = await client.post("/model/reload", headers={"Authorization": f"Bearer {token}"})
            assert allowed.status_code == 200
            assert (await client.post("/score", content=image)).status_code == 200
            assert (await client.get("/model")).status_code == 200
    assert token not in caplog.text
    assert token not in repr(settings_for(model_root, api_token=token))


async def test_a_model_that_fails_on_real_images_fails_its_warm_up_and_the_old_one_keeps_serving(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    """Its indices point past its boxes for any image but black: before, every /score was a 500."""
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    image = catalog.path(catalog.image("one-square-png").file).read_bytes()
    async with serve(create_app(settings_for(model_root))) as url, httpx.AsyncClient(base_url=url) as client:
        install_model(
            model_root, catalog, "tiny-yolo-1", version="v2", model_bytes=image_dependent_indices_onnx()
        )
        refused = await client.post("/model/reload")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "load_failed"
        assert "sample image" in refused.json()["error"]["message"]
        scored = await client.post("/score", content=image)
        assert scored.status_code == 200
        assert ScoreResponse.model_validate_json(scored.content).model.version == "v1"
