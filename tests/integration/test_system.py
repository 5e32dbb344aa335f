"""The whole system under faults, on one `LocalStack` (real Azurite, simulator, loader and inference).

Each test publishes what it needs, so the tests do not depend on their order; `test_stack_demo.py`
covers the demo's own v1 → v2 swap, these extend it (the CLI path, a cross-runtime swap, bad packages,
crashes of the simulator and of the inference module).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_shared.desired import desired_patch
from edge_shared.repository import ModelRepository
from edge_tools.faultproxy import FaultProxy, Policy
from edge_tools.fixtures import FixtureCatalog, digests, ensure_fixtures
from edge_tools.fixtures.real import COCO_SSD_ID, YOLOV8N_ID
from edge_tools.realmodels import default_real_cache
from edge_tools.stack.demo import LoadClients, publish, wait_until_serving
from edge_tools.stack.stack import REPO_ROOT, LocalStack
from tests.coco_truth import PHOTOS, assert_found

pytestmark = pytest.mark.integration

WAIT = 60.0
#: Long enough for the SDK's 10 s reconnect interval after the simulator comes back.
RECONNECT_WAIT = 90.0
JPEG = {"Content-Type": "image/jpeg"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("system")) as running:
        yield running


@pytest.fixture(scope="module")
def image(catalog: FixtureCatalog) -> bytes:
    return catalog.path(catalog.image("one-square-jpeg").file).read_bytes()


def unique(model_id: str) -> str:
    """A version label no other test uses, so each test sees its own install."""
    return f"{model_id}-{uuid.uuid4().hex[:8]}"


def serve(stack: LocalStack, catalog: FixtureCatalog, model_id: str) -> str:
    version = unique(model_id)
    publish(stack, catalog.path(catalog.model(model_id).zip_file), version)
    wait_until_serving(stack, version, timeout=WAIT)
    return version


def score(stack: LocalStack, image: bytes) -> dict[str, Any]:
    response = httpx.post(
        f"{stack.endpoints.inference_url}/score", content=image, headers={"Content-Type": "image/jpeg"}
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def model_update(stack: LocalStack) -> dict[str, Any]:
    update: dict[str, Any] = stack.reported("loader").get("ModelUpdate") or {}
    return update


def served_version(stack: LocalStack) -> str:
    version: str = httpx.get(f"{stack.endpoints.inference_url}/model", timeout=5.0).json()["version"]
    return version


def cli(stack: LocalStack, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """`edge-model ...` as a user runs it, configured through the environment as `make up` prints."""
    e = stack.endpoints
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    env.update(
        EDGE_HUB_CONNECTION_STRING=e.hub_connection_string,
        EDGE_HUB_CA_FILE=str(e.hub_ca_file),
        EDGE_DEVICE_ID=e.device_id,
        EDGE_STORAGE_CONNECTION_STRING=e.storage_connection_string,
        EDGE_STORAGE_CA_FILE=str(e.storage_ca_file),
        **extra_env,
    )
    return subprocess.run(
        [sys.executable, "-m", "edge_tools.publish", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def full_desired(version: str, url: str, published: bytes, *, size: int | None = None) -> dict[str, Any]:
    """Every contract key, unused ones null: a twin PATCH merges, so keys left out keep older values."""
    sums = digests(published)
    return desired_patch(
        f"{version}.zip",
        url,
        content_md5=sums.md5_base64,
        content_sha256=sums.sha256,
        version=version,
        size=size,
        clear_unset=True,
    )


def corrupt_zip_bytes(data: bytes) -> bytes:
    """The same ZIP with one byte of its last member's data flipped (still the same size)."""
    broken = bytearray(data)
    broken[len(broken) // 2] ^= 0xFF
    return bytes(broken)


def padded_zip(catalog: FixtureCatalog, model_id: str, padding: int) -> bytes:
    """A fixture model's files plus an incompressible extra file, so its download takes a while."""
    fixture = catalog.model(model_id)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for relative in (fixture.model_file, fixture.label_file):
            path = catalog.path(relative)
            archive.writestr(path.name, path.read_bytes())
        archive.writestr("padding.bin", os.urandom(padding))
    return buffer.getvalue()


def refusal(stack: LocalStack, version: str, state: str = "failed") -> dict[str, Any]:
    """The loader's `ModelUpdate` once it reports `version` failed (or `rejected` by inference)."""

    def failed() -> dict[str, Any] | None:
        update = model_update(stack)
        return update if update.get("version") == version and update.get("state") == state else None

    update: dict[str, Any] = stack.wait_for(f"the loader to refuse {version}", failed, timeout=WAIT)
    return update


def test_cli_publish_is_installed_served_and_detects(
    stack: LocalStack, catalog: FixtureCatalog, image: bytes
) -> None:
    version = unique("tiny-yolo-1")
    published = cli(stack, "publish", str(catalog.path(catalog.model("tiny-yolo-1").zip_file)),
                    "--version", version, "--no-progress")  # fmt: skip
    assert published.returncode == 0, published.stderr
    wait_until_serving(stack, version, timeout=WAIT)

    body = score(stack, image)
    assert body["model"] == {"version": version, "runtime": "onnx"}
    [detection] = body["detections"]
    assert detection["label"] == "person" and detection["score"] > 0.8
    stack.wait_for(
        "inference to report the new ActiveModel",
        lambda: (stack.reported("inference").get("ActiveModel") or {}).get("version") == version,
        timeout=WAIT,
    )
    status = cli(stack, "status", "--json")
    assert status.returncode == 0, status.stderr
    reported = json.loads(status.stdout)
    assert reported["loader"]["ModelUpdate"]["state"] == "ready"
    assert reported["loader"]["ModelUpdate"]["version"] == version
    assert reported["inference"]["ActiveModel"]["version"] == version
    text = json.dumps(reported)
    assert "sig=" not in text and "sig=" not in published.stdout + published.stderr  # no SAS anywhere


def test_cross_runtime_swap_under_load_fails_no_request_and_never_goes_back(
    stack: LocalStack, catalog: FixtureCatalog, image: bytes
) -> None:
    old = serve(stack, catalog, "tiny-yolo-1")
    new = unique("ssd-lite-2")
    with LoadClients(f"{stack.endpoints.inference_url}/score", image, max_seconds=60.0) as load:
        stack.wait_for("answers from the old model", lambda: load.count(old) >= 20, timeout=WAIT)
        publish(stack, catalog.path(catalog.model("ssd-lite-2").zip_file), new)
        wait_until_serving(stack, new, timeout=WAIT)
        stack.wait_for("answers from the new model", lambda: load.count(new) >= 20, timeout=WAIT)

    assert load.errors == []
    answers = [answer for own in load.answers for answer in own]
    assert [a for a in answers if a.status != 200] == []
    assert {a.version for a in answers} == {old, new}
    for own in load.answers:
        versions = [answer.version for answer in own]
        # Each client sees the old model, then the new one, and never the old one again.
        assert versions == sorted(versions, key=lambda v: v == new), versions
    assert all(a.labels == ("person",) for a in answers if a.version == old)
    assert all(a.labels == ("car",) for a in answers if a.version == new)  # TFLite SSD, class 2


def test_corrupt_zip_is_reported_as_checksum_mismatch_and_the_old_model_keeps_serving(
    stack: LocalStack, catalog: FixtureCatalog, image: bytes
) -> None:
    serving = serve(stack, catalog, "tiny-yolo-2")
    good = catalog.path(catalog.model("tiny-yolo-1").zip_file).read_bytes()
    version = unique("corrupt")
    name = f"system/{version}.zip"
    assert stack.azurite is not None
    stack.azurite.upload("models", name, corrupt_zip_bytes(good))
    # The digests are those the publisher computed before the stored bytes were damaged.
    desired = full_desired(version, stack.azurite.sas_url("models", name), good)
    with stack.hub() as hub:
        hub.patch_module_desired(stack.endpoints.device_id, "loader", desired)

    update = refusal(stack, version)
    assert update["error"]["code"] == "checksum_mismatch"
    assert "sig=" not in json.dumps(update)
    reported = stack.reported("loader")
    assert version not in reported["InstalledModels"]
    assert reported["LatestAIModelFileName"] == catalog.model("tiny-yolo-2").zip_name
    assert ModelRepository(stack.endpoints.model_root).current_version() == serving
    assert served_version(stack) == serving
    assert score(stack, image)["model"]["version"] == serving


def test_simulator_killed_during_a_download_the_update_still_completes(
    stack: LocalStack, catalog: FixtureCatalog, image: bytes
) -> None:
    serve(stack, catalog, "tiny-yolo-1")
    assert stack.azurite is not None
    data = padded_zip(catalog, "tiny-yolo-2", padding=1536 * 1024)
    version = unique("slow")
    name = f"system/{version}.zip"
    stack.azurite.upload("models", name, data)
    connstr = stack.endpoints.hub_connection_string
    # ~6 s for the whole ZIP: the simulator is killed well before the last byte.
    with FaultProxy(stack.azurite.port, [Policy(throttle_bps=256 * 1024)]) as proxy:
        url = stack.azurite.sas_url("models", name, port=proxy.port)
        desired = full_desired(version, url, data, size=len(data))
        with stack.hub() as hub:
            hub.patch_module_desired(stack.endpoints.device_id, "loader", desired)
        stack.wait_for(
            "the download to start",
            lambda: model_update(stack).get("version") == version and proxy.downstream_bytes >= 128 * 1024,
            timeout=WAIT,
        )
        stack.restart_simulator(kill=True)
        assert proxy.downstream_bytes < len(data)  # still downloading while the simulator was down
        assert stack.endpoints.hub_connection_string == connstr
        assert (stack.workdir / "edgehub" / "service.connstr").read_text().strip() == connstr
        wait_until_serving(stack, version, timeout=RECONNECT_WAIT)

    update = model_update(stack)
    assert update["state"] == "ready" and update.get("error") is None  # null deletes a twin key
    assert ModelRepository(stack.endpoints.model_root).current_version() == version
    body = score(stack, image)
    assert body["model"]["version"] == version and [d["label"] for d in body["detections"]] == ["car"]


def test_inference_killed_and_restarted_serves_current_at_once(
    stack: LocalStack, catalog: FixtureCatalog, image: bytes
) -> None:
    version = serve(stack, catalog, "ssd-lite-1")
    stack.restart_module("inference", kill=True)  # returns as soon as /health/live answers
    url = stack.endpoints.inference_url
    # No waiting and no message from the loader: the model named by `current` is already loaded.
    assert httpx.get(f"{url}/health/ready").status_code == 200
    assert served_version(stack) == version == ModelRepository(stack.endpoints.model_root).current_version()
    body = score(stack, image)
    assert body["model"] == {"version": version, "runtime": "tflite"}
    assert [d["label"] for d in body["detections"]] == ["person"]


def test_restarting_the_simulator_of_a_stack_that_never_started_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        LocalStack(tmp_path).restart_simulator()


# Real COCO detectors zipped as users zip them: Coral's SSD with its `coco_labels.txt` as shipped, the
# Ultralytics YOLOv8n export alone (its class names are in its metadata).


@pytest.fixture(scope="module")
def real_catalog() -> FixtureCatalog:
    return ensure_fixtures(REPO_ROOT / "build" / "fixtures", real_cache=default_real_cache())


@pytest.mark.parametrize("model_id", [COCO_SSD_ID, YOLOV8N_ID])
def test_real_coco_detectors_name_and_box_real_photographs_through_the_whole_stack(
    stack: LocalStack, real_catalog: FixtureCatalog, model_id: str
) -> None:
    version = serve(stack, real_catalog, model_id)
    for image_id in PHOTOS:
        photo = real_catalog.path(real_catalog.image(image_id).file).read_bytes()
        response = httpx.post(
            f"{stack.endpoints.inference_url}/score",
            content=photo,
            headers={"Content-Type": "image/png"},
            timeout=WAIT,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"]["version"] == version
        assert_found(body, image_id)


def test_a_package_with_two_label_files_is_refused_before_install_and_the_old_model_serves(
    stack: LocalStack, real_catalog: FixtureCatalog
) -> None:
    serving = serve(stack, real_catalog, COCO_SSD_ID)
    ssd = real_catalog.model(COCO_SSD_ID)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("detect.tflite", real_catalog.path(ssd.model_file).read_bytes())
        archive.writestr("coco_labels.txt", real_catalog.path(ssd.label_file).read_bytes())
        archive.writestr("README.txt", b"my detector\n")
    version = unique("two-labels")
    name = f"system/{version}.zip"
    assert stack.azurite is not None
    stack.azurite.upload("models", name, buffer.getvalue())
    with stack.hub() as hub:
        desired = full_desired(version, stack.azurite.sas_url("models", name), buffer.getvalue())
        hub.patch_module_desired(stack.endpoints.device_id, "loader", desired)

    update = refusal(stack, version)
    assert update["error"]["code"] == "invalid_model"
    assert "README.txt" in update["error"]["message"] and "coco_labels.txt" in update["error"]["message"]
    assert version not in stack.reported("loader")["InstalledModels"]
    assert served_version(stack) == serving


def corrupt_onnx_zip(catalog: FixtureCatalog, model_id: str, directory: Path) -> Path:
    """A fixture model's ZIP with an ONNX file that passes the loader's checks (its first byte is valid
    protobuf, its digests are true) but that ONNX Runtime cannot load."""
    fixture = catalog.model(model_id)
    path = directory / f"{model_id}-corrupt.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(catalog.path(fixture.model_file).name, b"\x08garbage" * 64)
        archive.writestr(catalog.path(fixture.label_file).name, catalog.path(fixture.label_file).read_bytes())
    return path


def test_a_model_inference_refuses_is_rejected_current_goes_back_and_survives_restarts(
    stack: LocalStack, catalog: FixtureCatalog, image: bytes, tmp_path: Path
) -> None:
    good = serve(stack, catalog, "tiny-yolo-1")
    bad = unique("corrupt-onnx")
    publish(stack, corrupt_onnx_zip(catalog, "tiny-yolo-2", tmp_path), bad)
    update = refusal(stack, bad, "rejected")
    assert update["error"]["code"] == "load_failed"
    assert str(stack.endpoints.model_root) not in json.dumps(update)  # no device path in the twin
    repo = ModelRepository(stack.endpoints.model_root)
    assert repo.current_version() == good and repo.is_installed(bad)
    assert stack.reported("loader")["LatestAIModelFileName"] != f"{bad}.zip"
    assert served_version(stack) == good
    assert score(stack, image)["model"]["version"] == good

    stack.restart_module("inference", kill=True)  # before this change: 503 no_model for good
    assert httpx.get(f"{stack.endpoints.inference_url}/health/ready").status_code == 200
    assert served_version(stack) == good
    assert score(stack, image)["model"]["version"] == good
    assert model_update(stack)["state"] == "rejected"  # not retried: the desired state did not change

    # A volume whose `current` still names the refused version (as loaders before this change left it):
    # inference starts on the newest version that loads, says so, and the loader puts `current` back.
    repo.set_current(bad)
    stack.restart_module("inference", kill=True)
    assert served_version(stack) == good
    active = stack.wait_for(
        "inference to report its fallback",
        lambda: (a := stack.reported("inference").get("ActiveModel") or {}).get("fallbackFrom") == bad and a,
        timeout=WAIT,
    )
    assert active["version"] == good and active["fallbackReason"] == "load_failed"
    stack.wait_for("the loader to put current back", lambda: repo.current_version() == good, timeout=WAIT)

    later = serve(stack, catalog, "tiny-yolo-2")  # a new desired version installs normally
    assert score(stack, image)["model"]["version"] == later
    stack.wait_for(
        "the fallback to leave ActiveModel",
        lambda: (
            (a := stack.reported("inference").get("ActiveModel") or {}).get("version") == later
            and "fallbackFrom" not in a
        ),
        timeout=WAIT,
    )
