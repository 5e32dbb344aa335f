"""`edge-model publish --delta-from` against real Azurite (HTTPS) and the simulator's IoT Hub service API."""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_shared.delta import FORMAT, apply_delta
from edge_shared.desired import parse_desired
from edge_tools.azurite import Azurite
from edge_tools.fixtures.catalog import FixtureCatalog
from edge_tools.stack.stack import DEFAULT_MANIFEST
from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import start_simulator
from tests.integration.test_publish_cli import cli_env, edge_model
from tests.shared.test_delta_apply import install_base, weights_model
from tests.tools.test_delta_produce import package

pytestmark = pytest.mark.integration


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    with Azurite(tmp_path / "azurite") as server:
        yield server


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[EdgeHubSimulator]:
    simulator = start_simulator(DEFAULT_MANIFEST, tmp_path / "sim")
    yield simulator
    simulator.stop()


def _download(url: str, azurite: Azurite) -> bytes:
    response = httpx.get(url, verify=ssl.create_default_context(cafile=str(azurite.ca_file)))
    assert response.status_code == 200
    return response.content


def test_delta_from_the_cache_is_uploaded_and_named_beside_the_full_url(
    simulator: EdgeHubSimulator, azurite: Azurite, catalog: FixtureCatalog, tmp_path: Path
) -> None:
    env = cli_env(simulator, azurite, EDGE_MODEL_CACHE_DIR=str(tmp_path / "cache"))
    v1 = catalog.path(catalog.model("tiny-yolo-1").zip_file)
    v2 = catalog.path(catalog.model("tiny-yolo-2").zip_file)
    first = edge_model(env, "publish", str(v1), "--version", "1.0", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["delta"] is None
    assert simulator.control.desired("loader").get("Delta") is None  # null deletes a twin property
    assert (tmp_path / "cache" / "1.0.zip").read_bytes() == v1.read_bytes()

    second = edge_model(env, "publish", str(v2), "--version", "2.0", "--delta-from", "1.0", "--json")
    assert second.returncode == 0, second.stderr
    assert "sig=" not in second.stdout + second.stderr
    summary = json.loads(second.stdout)["delta"]
    assert summary["published"] is True and summary["baseVersion"] == "1.0"
    desired = parse_desired(simulator.control.desired("loader"))
    assert desired.delta is not None
    assert desired.delta.base_version == "1.0" and desired.delta.format == FORMAT
    delta = _download(desired.delta.download_url.get_secret_value(), azurite)
    assert hashlib.sha256(delta).hexdigest() == desired.delta.content_sha256
    assert len(delta) == summary["size"] < v2.stat().st_size
    assert _download(desired.download_url.get_secret_value(), azurite) == v2.read_bytes()

    install_base(v1.read_bytes(), tmp_path / "device" / "1.0")
    (tmp_path / "delta.emdelta").write_bytes(delta)
    result = apply_delta(
        tmp_path / "delta.emdelta",
        tmp_path / "device" / "1.0",
        tmp_path / "rebuilt.zip",
        base_version="1.0",
        expected_zip_sha256=desired.content_sha256,
    )
    assert (tmp_path / "rebuilt.zip").read_bytes() == v2.read_bytes()
    assert result.zip_sha256 == hashlib.sha256(v2.read_bytes()).hexdigest()


def test_base_missing_from_the_cache_is_fetched_from_blob_storage(
    simulator: EdgeHubSimulator, azurite: Azurite, catalog: FixtureCatalog, tmp_path: Path
) -> None:
    v1 = catalog.path(catalog.model("ssd-lite-1").zip_file)
    v2 = catalog.path(catalog.model("ssd-lite-2").zip_file)
    first = edge_model(
        cli_env(simulator, azurite, EDGE_MODEL_CACHE_DIR=str(tmp_path / "a")),
        "publish",
        str(v1),
        "--version",
        "1",
    )
    assert first.returncode == 0, first.stderr
    env = cli_env(simulator, azurite)
    second = edge_model(
        env,
        "publish",
        str(v2),
        "--version",
        "2",
        "--delta-from",
        "1",
        "--cache-dir",
        str(tmp_path / "b"),
        "--json",
    )
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["delta"]["published"] is True
    assert simulator.control.desired("loader")["Delta"]["BaseVersion"] == "1"


def test_unknown_base_version_fails_clearly_and_changes_nothing(
    simulator: EdgeHubSimulator, azurite: Azurite, catalog: FixtureCatalog, tmp_path: Path
) -> None:
    env = cli_env(simulator, azurite, EDGE_MODEL_CACHE_DIR=str(tmp_path / "cache"))
    v2 = catalog.path(catalog.model("tiny-yolo-2").zip_file)
    result = edge_model(env, "publish", str(v2), "--version", "2.0", "--delta-from", "0.1")
    assert result.returncode == 2
    assert "base version '0.1'" in result.stderr
    assert "FileName" not in simulator.control.desired("loader")


def test_full_retrain_publishes_no_delta(
    simulator: EdgeHubSimulator, azurite: Azurite, tmp_path: Path
) -> None:
    env = cli_env(simulator, azurite, EDGE_MODEL_CACHE_DIR=str(tmp_path / "cache"))
    (tmp_path / "m-1.zip").write_bytes(package(weights_model(1)))
    (tmp_path / "m-2.zip").write_bytes(package(weights_model(2)))
    assert edge_model(env, "publish", str(tmp_path / "m-1.zip"), "--version", "1").returncode == 0
    result = edge_model(
        env, "publish", str(tmp_path / "m-2.zip"), "--version", "2", "--delta-from", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["delta"]
    assert summary["published"] is False and summary["shareOfZip"] > 0.85
    desired = simulator.control.desired("loader")
    assert desired.get("Delta") is None and desired["Version"] == "2"
