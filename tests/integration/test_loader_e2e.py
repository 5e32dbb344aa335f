"""The loader as a process (`python -m loader_module`) on the real SDK, the edgeHub simulator and Azurite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_shared.repository import MANIFEST_FILE, ModelRepository
from edge_tools.azurite import Azurite
from edge_tools.faultproxy import FaultProxy, Policy
from edgehub_sim.server import EdgeHubSimulator
from tests.integration.conftest_loader import is_state, loader_process, model_update, publish, start_simulator
from tests.loader.conftest import model_zip
from tests.loader.https_proxy import HttpsProxy
from tests.reliability.invariants import poll

pytestmark = pytest.mark.integration

WAIT = 60.0


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with Azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[EdgeHubSimulator]:
    simulator = start_simulator(tmp_path / "sim")
    yield simulator
    simulator.stop()


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    root = tmp_path / "volume"
    root.mkdir()
    return root


def _messages(simulator: EdgeHubSimulator, output: str) -> list[dict[str, object]]:
    found = [m for m in simulator.routed_messages() + simulator.upstream_messages() if m.output == output]
    return [json.loads(m.body) for m in sorted(found, key=lambda m: m.seq)]


def test_publish_install_announce_and_methods_over_the_real_sdk(
    simulator: EdgeHubSimulator, azurite: Azurite, model_root: Path, tmp_path: Path
) -> None:
    log = tmp_path / "loader.log"
    v1 = publish(azurite, model_zip("onnx"), "tiny-yolov3-1.1")
    simulator.set_desired("loader", v1)  # the reference architecture's exact three properties
    with loader_process(simulator, azurite, model_root, log) as loader:
        simulator.wait_for(lambda: is_state(simulator, "ready", "tiny-yolov3-1.1"), WAIT)
        reported = simulator.reported("loader")
        assert reported["LatestAIModelFileName"] == "tiny-yolov3-1.1.zip"
        assert reported["InstalledModels"] == ["tiny-yolov3-1.1"]
        simulator.wait_for(lambda: len(_messages(simulator, "DLModelOutput")) == 1, WAIT)
        [announced] = _messages(simulator, "DLModelOutput")
        assert announced["local_model_path"] == "models/tiny-yolov3-1.1/model.onnx"
        routed = [m for m in simulator.routed_messages() if m.output == "DLModelOutput"]
        assert routed[0].target_module == "inference" and routed[0].target_input == "DLModelInput"
        simulator.wait_for(lambda: len(_messages(simulator, "ModelStatus")) == 1, WAIT)
        assert _messages(simulator, "ModelStatus")[0]["state"] == "ready"

        simulator.set_desired("loader", publish(azurite, model_zip("tflite"), "ssd-2.0"))
        simulator.wait_for(lambda: is_state(simulator, "ready", "ssd-2.0"), WAIT)
        status = simulator.invoke_method("loader", "getStatus")
        assert status.status == 200 and status.payload["InstalledModels"] == ["ssd-2.0", "tiny-yolov3-1.1"]
        rolled = simulator.invoke_method("loader", "rollback", {})
        assert rolled.status == 200 and rolled.payload["version"] == "tiny-yolov3-1.1"
        assert ModelRepository(model_root).current_version() == "tiny-yolov3-1.1"
        simulator.wait_for(lambda: len(_messages(simulator, "DLModelOutput")) == 3, WAIT)
        assert loader.terminate() == 0
    secrets = [httpx.URL(str(v1["DownloadUrl"])).params["sig"]]
    text = log.read_text()
    assert '"loader_module' in text  # the JSON logs were captured
    for secret in secrets:
        assert secret not in text
        assert secret not in json.dumps(simulator.reported("loader"))


def test_sigkill_during_download_then_restart_resumes_and_completes(
    simulator: EdgeHubSimulator, azurite: Azurite, model_root: Path, tmp_path: Path
) -> None:
    log = tmp_path / "loader.log"
    repo = ModelRepository(model_root)
    simulator.set_desired("loader", publish(azurite, model_zip("onnx"), "v1"))
    with FaultProxy(azurite.port, [Policy(throttle_bps=384 * 1024)]) as proxy:
        big = model_zip("tflite", padding=2 * 1024 * 1024)
        with loader_process(simulator, azurite, model_root, log) as loader:
            simulator.wait_for(lambda: is_state(simulator, "ready", "v1"), WAIT)
            simulator.set_desired("loader", publish(azurite, big, "v2", port=proxy.port))
            simulator.wait_for(
                lambda: (
                    is_state(simulator, "downloading", "v2")
                    and int(model_update(simulator).get("bytesDone") or 0) >= 512 * 1024
                ),
                WAIT,
            )
            loader.kill()
        assert repo.current_version() == "v1"
        assert sorted(p.name for p in repo.models_dir.iterdir()) == ["v1"]
        assert all((p / MANIFEST_FILE).is_file() for p in repo.models_dir.iterdir())
        parts = list(repo.downloads_dir.glob("*.part"))
        assert len(parts) == 1 and parts[0].stat().st_size >= 512 * 1024
        have = parts[0].stat().st_size

        proxy.set_policies([Policy()])
        with loader_process(simulator, azurite, model_root, log) as loader:
            simulator.wait_for(lambda: is_state(simulator, "ready", "v2"), WAIT)
            simulator.wait_for(
                lambda: any(e["version"] == "v2" for e in _messages(simulator, "ModelStatus")), WAIT
            )
            assert loader.terminate() == 0
    assert repo.current_version() == "v2"
    ready = [e for e in _messages(simulator, "ModelStatus") if e["version"] == "v2"]
    assert ready[-1]["state"] == "ready"
    assert int(str(ready[-1]["bytesDownloaded"])) <= len(big) - have + 64 * 1024


def test_only_the_latest_of_three_offline_patches_is_installed(
    simulator: EdgeHubSimulator, azurite: Azurite, model_root: Path, tmp_path: Path
) -> None:
    with FaultProxy(azurite.port) as proxy:
        for index in (1, 2, 3):  # three publishes while the loader is not running
            simulator.set_desired(
                "loader", publish(azurite, model_zip("onnx", padding=index), f"v{index}", port=proxy.port)
            )
        with loader_process(simulator, azurite, model_root, tmp_path / "loader.log") as loader:
            simulator.wait_for(lambda: is_state(simulator, "ready", "v3"), WAIT)
            assert loader.terminate() == 0
        assert proxy.connections == 1
    assert ModelRepository(model_root).installed_versions() == ["v3"]


def test_sigkill_during_install_leaves_a_valid_current_and_heals(
    simulator: EdgeHubSimulator, azurite: Azurite, model_root: Path, tmp_path: Path
) -> None:
    log = tmp_path / "loader.log"
    repo = ModelRepository(model_root)
    simulator.set_desired("loader", publish(azurite, model_zip("onnx"), "v1"))
    with loader_process(simulator, azurite, model_root, log) as loader:
        simulator.wait_for(lambda: is_state(simulator, "ready", "v1"), WAIT)
        # A large extra file makes unpacking, hashing and fsyncing take a noticeable time.
        simulator.set_desired("loader", publish(azurite, model_zip("tflite", padding=48 * 1024 * 1024), "v2"))
        simulator.wait_for(lambda: is_state(simulator, "installing", "v2"), WAIT)
        loader.kill()
    current = repo.current_version()
    assert current in ("v1", "v2")
    repo.model_paths(str(current))
    assert all((p / MANIFEST_FILE).is_file() for p in repo.models_dir.iterdir())

    with loader_process(simulator, azurite, model_root, log) as loader:
        simulator.wait_for(lambda: is_state(simulator, "ready", "v2"), WAIT)
        assert loader.terminate() == 0
    assert repo.current_version() == "v2"
    assert list(repo.staging_dir.iterdir()) == []
    assert [m["version"] for m in _messages(simulator, "DLModelOutput")][-1] == "v2"


def test_the_loader_process_downloads_through_the_proxy_iot_edge_hands_it(
    simulator: EdgeHubSimulator, azurite: Azurite, model_root: Path, tmp_path: Path
) -> None:
    """`https_proxy` in lower case, as IoT Edge sets it in a module's environment (issue 17, item 16);
    `LOADER_NO_PROXY` empty so that loopback storage goes through the proxy too."""
    data = model_zip("onnx", padding=200_000)
    with HttpsProxy(tmp_path / "proxy") as proxy:
        simulator.set_desired("loader", publish(azurite, data, "v1"))
        env = {"https_proxy": proxy.url, "LOADER_NO_PROXY": ""}
        with loader_process(simulator, azurite, model_root, tmp_path / "loader.log", env) as loader:
            simulator.wait_for(lambda: is_state(simulator, "ready", "v1"), WAIT)
            assert loader.terminate() == 0
        storage = f"127.0.0.1:{azurite.port}"
        assert poll(lambda: any(host == storage for host, _ in proxy.connects()), within=10), proxy.connects()
        assert sum(size for host, size in proxy.connects() if host == storage) >= len(data)
    assert ModelRepository(model_root).current_version() == "v1"
