"""Schemathesis over the OpenAPI schema of a live server with a model: generated requests never get a
500 and every response matches the schema (`tests/inference/fuzz.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_tools.fixtures import FixtureCatalog
from inference_module.api import create_app
from inference_module.settings import InferenceSettings
from tests.inference.fuzz import fuzz_api
from tests.inference.helpers import install_model, serve_in_thread

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 50


def test_no_generated_request_gets_a_server_error(model_root: Path, catalog: FixtureCatalog) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    app_settings = InferenceSettings(model_root=model_root, edgehub=False, host="127.0.0.1", port=0)
    with serve_in_thread(create_app(app_settings)) as url:
        seen = fuzz_api(url, EXAMPLES_PER_OPERATION, model_loaded=True)
    assert len(seen) >= 10
    assert "POST /score" in seen
