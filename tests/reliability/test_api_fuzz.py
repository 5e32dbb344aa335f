"""Schemathesis over the inference HTTP API in the states `tests/inference/test_openapi_fuzz.py` does not
cover: no model loaded yet (every scoring call must be a 503, never a 500) and a TFLite model; `--long`
multiplies the examples. The same checks as there: no 5xx other than a documented 503, responses match
the schema."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edge_tools.fixtures import FixtureCatalog
from inference_module.api import create_app
from inference_module.settings import InferenceSettings
from tests.inference.fuzz import fuzz_api
from tests.inference.helpers import install_model, serve_in_thread

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 20


@pytest.mark.parametrize("state", ["no-model", "tflite"])
def test_generated_requests_never_get_a_500(
    state: str, tmp_path: Path, catalog: FixtureCatalog, soak_factor: int
) -> None:
    root = tmp_path / "models-root"
    root.mkdir()
    if state == "tflite":
        install_model(root, catalog, "ssd-lite-1", version="v1")
    app_settings = InferenceSettings(model_root=root, edgehub=False, host="127.0.0.1", port=0)
    with serve_in_thread(create_app(app_settings)) as url:
        seen = fuzz_api(url, EXAMPLES_PER_OPERATION * soak_factor, model_loaded=state != "no-model")
    assert "POST /score" in seen and "POST /model/reload" in seen


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 160, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


query_values = st.text(max_size=12) | st.sampled_from(
    ["0", "1", "0.5", "-1", "1e309", "nan", "inf", "ava", "native"]
)


def test_decodable_images_with_arbitrary_queries_and_types_never_get_a_500(
    tmp_path: Path, catalog: FixtureCatalog, soak_factor: int
) -> None:
    """What schemathesis rarely reaches (its bytes seldom decode): a real image, hostile query and type."""
    root = tmp_path / "models-root"
    root.mkdir()
    install_model(root, catalog, "tiny-yolo-1", version="v1")
    app_settings = InferenceSettings(model_root=root, edgehub=False, host="127.0.0.1", port=0)
    statuses: set[int] = set()
    with serve_in_thread(create_app(app_settings)) as url, httpx.Client(base_url=url, timeout=30.0) as client:

        @given(
            path=st.sampled_from(["/score", "/score/annotated"]),
            query=st.dictionaries(
                st.sampled_from(["threshold", "max_detections", "format", "x"]), query_values
            ),
            content_type=st.sampled_from(
                ["image/jpeg", "image/png", "application/octet-stream", "text/plain", ""]
            ),
            size=st.tuples(st.integers(1, 700), st.integers(1, 700)),
        )
        @settings(max_examples=60 * soak_factor, deadline=None, database=None)
        def check(path: str, query: dict[str, str], content_type: str, size: tuple[int, int]) -> None:
            headers = {"Content-Type": content_type} if content_type else {}
            response = client.post(path, params=query, content=_jpeg(*size), headers=headers)
            statuses.add(response.status_code)
            assert response.status_code in (200, 400, 413, 415, 422), response.text
            if response.status_code != 200:
                assert set(response.json()["error"]) == {"code", "message"}

        check()
    assert {200, 422} <= statuses, statuses
