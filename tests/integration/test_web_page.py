"""The inference module's `GET /` page in a real headless browser (Debian's chromium driven by playwright).

The module runs as a real process (`python -m inference_module`, uvicorn on 127.0.0.1) with a fixture
model installed; the browser uploads a sample image through the page's form, and the test reads the boxes
and labels the page's JavaScript drew from the DOM. A screenshot is kept in `build/artifacts/`.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_tools.fixtures import FixtureCatalog
from edge_tools.stack.processes import ManagedProcess
from tests.inference.helpers import install_model

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "build" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
# What the brief asks for: no sandbox (root in CI), no GPU, nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
TIMEOUT_MS = 30_000
#: Box edges drawn by the page agree with the API (same numbers) to a pixel or two of rounding, and
#: with the painted squares to the blob detector's accuracy (100 px anchors; one square is 120 px).
PIXEL_SLACK = 2.0
TRUTH_SLACK = 0.06


@pytest.fixture
def inference_url(tmp_path: Path, catalog: FixtureCatalog) -> Iterator[str]:
    """`python -m inference_module` on a free loopback port with `tiny-yolo-1` installed as `current`."""
    root = tmp_path / "models-root"
    install_model(root, catalog, "tiny-yolo-1", version="tiny-yolo-1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERENCE_", "IOTEDGE_"))}
    env.update(
        INFERENCE_MODEL_ROOT=str(root),
        INFERENCE_HOST="127.0.0.1",
        INFERENCE_PORT="0",
        INFERENCE_EDGEHUB="false",
    )
    port: list[int] = []
    seen = threading.Event()

    def on_line(line: str) -> None:
        match = RUNNING.search(line)
        if match and not seen.is_set():
            port.append(int(match.group(1)))
            seen.set()

    process = ManagedProcess(
        "inference", [sys.executable, "-m", "inference_module"], env=env, log_dir=tmp_path / "logs"
    )
    process.on_line(on_line)
    process.start()
    try:
        process.wait_ready(seen.is_set, timeout=60, what="listening")
        url = f"http://127.0.0.1:{port[0]}"
        process.wait_ready(
            lambda: httpx.get(f"{url}/health/ready", timeout=2).status_code == 200, timeout=60, what="ready"
        )
        yield url
    finally:
        process.stop()


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no browser: {CHROMIUM} is missing and could not be installed "
            "(`make browser` runs `apt-get install -y chromium`; it needs root and Debian's package mirror)"
        )
    return CHROMIUM


def test_uploading_an_image_draws_labelled_boxes_where_the_api_found_them(
    inference_url: str, chromium: Path, catalog: FixtureCatalog
) -> None:
    from playwright.sync_api import sync_playwright

    image = catalog.image("two-squares-jpeg")
    image_path = catalog.path(image.file)
    api = httpx.post(
        f"{inference_url}/score", content=image_path.read_bytes(), headers={"Content-Type": "image/jpeg"}
    ).json()
    assert len(api["detections"]) == 2  # the page must show what the API says, nothing more
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "web-page.png"
    screenshot.unlink(missing_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{inference_url}/")
            page.wait_for_function("document.getElementById('model').textContent.includes('tiny-yolo-1')")
            assert "onnx" in page.locator("#model").inner_text()

            page.set_input_files("#file", str(image_path))
            page.click("button[type=submit]")
            page.wait_for_function("document.querySelectorAll('#stage .box').length === 2")
            page.wait_for_function("document.getElementById('preview').complete")
            status = page.locator("#status").inner_text()
            preview = page.locator("#preview").bounding_box()
            boxes = [
                (page.locator("#stage .box").nth(i).bounding_box(), page.locator("#stage .box span").nth(i))
                for i in range(2)
            ]
            captions = [caption.inner_text() for _, caption in boxes]
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    assert "2 found" in status and "model tiny-yolo-1" in status
    assert preview is not None and preview["width"] > 100
    for (drawn, _), caption, detection, truth in zip(
        boxes, captions, api["detections"], image.boxes, strict=True
    ):
        assert caption == f"person {detection['score']:.2f}"
        assert drawn is not None
        # The page positions each box in % of the displayed image: map it back to fractions.
        fractions = {
            "left": (drawn["x"] - preview["x"]) / preview["width"],
            "top": (drawn["y"] - preview["y"]) / preview["height"],
            "width": drawn["width"] / preview["width"],
            "height": drawn["height"] / preview["height"],
        }
        for key, value in fractions.items():
            scale = preview["width"] if key in ("left", "width") else preview["height"]
            assert value == pytest.approx(detection["box"][key], abs=PIXEL_SLACK / scale), key
            assert value == pytest.approx(getattr(truth.normalized, key), abs=TRUTH_SLACK), key
    assert screenshot.stat().st_size > 10_000
