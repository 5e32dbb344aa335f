"""Two inference workers in the local stack: models published through Blob Storage, installed by the
loader and announced over edgeHub's routes reach both workers, reported once by the leader."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from edge_tools.fixtures import FixtureCatalog
from edge_tools.stack.demo import publish, wait_until_serving
from edge_tools.stack.stack import DEFAULT_MANIFEST, LocalStack

pytestmark = pytest.mark.integration
CONNECTIONS = 4


def two_workers(tmp_path: Path) -> Path:
    """deployment.json with the inference module's env asking for two workers."""
    manifest = json.loads(DEFAULT_MANIFEST.read_text(encoding="utf-8"))
    modules = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
    modules["inference"]["env"].update(
        {"INFERENCE_WORKERS": {"value": "2"}, "INFERENCE_PIPELINE_THREADS": {"value": "1"}}
    )
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


def versions_on_new_connections(url: str) -> list[str]:
    """`GET /model` on fresh connections: the leader hands them to the workers in turn."""
    versions = []
    for _ in range(CONNECTIONS):
        with httpx.Client(base_url=url, timeout=10.0) as client:
            versions.append(client.get("/model").json()["version"])
    return versions


def test_routed_updates_reach_every_worker(tmp_path: Path, catalog: FixtureCatalog) -> None:
    with LocalStack(tmp_path / "stack", manifest=two_workers(tmp_path)) as stack:
        url = stack.endpoints.inference_url
        for model_id in ("tiny-yolo-1", "tiny-yolo-2"):
            publish(stack, catalog.path(catalog.model(model_id).zip_file), model_id)
            wait_until_serving(stack, model_id)
            assert versions_on_new_connections(url) == [model_id] * CONNECTIONS
            assert stack.reported("inference")["ActiveModel"]["version"] == model_id
        logs = "\n".join(
            p.read_text(encoding="utf-8", errors="replace") for p in stack.logs.glob("inference*")
        )
        assert "serving with 2 worker processes" in logs and '"worker joined"' in logs
        served = [json.loads(line) for line in logs.splitlines() if '"path": "/model"' in line]
        assert {record.get("worker", 0) for record in served} == {0, 1}
