"""`edge-model` against real Azurite (HTTPS) and the simulator's IoT Hub service API."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_shared.desired import parse_desired
from edge_tools.azurite import Azurite
from edge_tools.fixtures.catalog import FixtureCatalog
from edge_tools.stack.stack import DEFAULT_MANIFEST
from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import start_simulator

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


def cli_env(simulator: EdgeHubSimulator, azurite: Azurite, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    env.update(
        EDGE_HUB_CONNECTION_STRING=simulator.service_connection_string,
        EDGE_HUB_CA_FILE=str(simulator.ca_path),
        EDGE_DEVICE_ID=simulator.device_id,
        EDGE_STORAGE_CONNECTION_STRING=azurite.connection_string,
        EDGE_STORAGE_CA_FILE=str(azurite.ca_file),
    )
    env.update(overrides)
    return env


def edge_model(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_tools.publish", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_publish_uploads_and_points_the_loader_twin_at_a_working_sas_url(
    simulator: EdgeHubSimulator, azurite: Azurite, catalog: FixtureCatalog
) -> None:
    model = catalog.model("tiny-yolo-1")
    zip_path = catalog.path(model.zip_file)
    result = edge_model(cli_env(simulator, azurite), "publish", str(zip_path), "--version", "1.0", "--json")
    assert result.returncode == 0, result.stderr
    assert "sig=" not in result.stdout + result.stderr
    assert "AccountKey" not in result.stdout + result.stderr

    desired = simulator.control.desired("loader")
    parsed = parse_desired(desired)
    data = zip_path.read_bytes()
    assert parsed.file_name == "tiny-yolo-1.zip" and parsed.version == "1.0"
    assert parsed.content_md5 == hashlib.md5(data).hexdigest()
    assert parsed.content_sha256 == hashlib.sha256(data).hexdigest()
    assert (
        desired["Size"] == len(data)
        and desired["ContentMD5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
    )
    url = parsed.download_url.get_secret_value()
    assert "sig=" in url and "sp=r" in url
    context = ssl.create_default_context(cafile=str(azurite.ca_file))
    response = httpx.get(url, verify=context)
    assert response.status_code == 200 and response.content == data


def test_publish_of_a_folder_zips_it_and_a_second_publish_replaces_the_desired_state(
    simulator: EdgeHubSimulator, azurite: Azurite, catalog: FixtureCatalog, tmp_path: Path
) -> None:
    model = catalog.model("ssd-lite-1")
    folder = tmp_path / "ssd"
    folder.mkdir()
    for name in (model.model_file, model.label_file):
        (folder / Path(name).name).write_bytes(catalog.path(name).read_bytes())
    env = cli_env(simulator, azurite)
    first = edge_model(env, "publish", str(folder), "--version", "7", "--json")
    assert first.returncode == 0, first.stderr
    assert simulator.control.desired("loader")["FileName"] == "ssd-7.zip"
    second_zip = str(catalog.path(catalog.model("ssd-lite-2").zip_file))
    second = edge_model(env, "publish", second_zip, "--version", "8", "--json")
    assert second.returncode == 0, second.stderr
    desired = simulator.control.desired("loader")
    assert desired["FileName"] == "ssd-lite-2.zip" and desired["Version"] == "8"
    assert json.loads(second.stdout)["desiredVersion"] > json.loads(first.stdout)["desiredVersion"]


def test_status_prints_a_table_and_rollback_without_a_loader_fails_clearly(
    simulator: EdgeHubSimulator, azurite: Azurite
) -> None:
    env = cli_env(simulator, azurite)
    status = edge_model(env, "status")
    assert status.returncode == 0, status.stderr
    assert "loader update state" in status.stdout and "inference active version" in status.stdout
    rollback = edge_model(env, "rollback", "1.0")
    assert rollback.returncode == 2
    assert "404" in rollback.stderr


def test_wrong_hub_key_is_refused_without_printing_the_key(
    simulator: EdgeHubSimulator, azurite: Azurite, catalog: FixtureCatalog
) -> None:
    wrong = base64.b64encode(b"w" * 32).decode()
    connstr = f"HostName={simulator.service_host};SharedAccessKeyName=iothubowner;SharedAccessKey={wrong}"
    env = cli_env(simulator, azurite, EDGE_HUB_CONNECTION_STRING=connstr)
    result = edge_model(
        env, "publish", str(catalog.path(catalog.model("tiny-yolo-1").zip_file)), "--version", "1"
    )
    assert result.returncode == 2
    assert "401" in result.stderr
    assert wrong not in result.stdout + result.stderr
