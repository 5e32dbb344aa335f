"""Less common paths of the service: lost edgeHub link, signatures, patch ordering, disk errors."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Unpack

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge_shared.desired import DesiredFields
from edge_shared.edgehub import Twin
from edge_shared.merge_patch import apply_patch
from edge_shared.repository import ModelRepository
from edge_tools.azurite import Azurite
from loader_module.settings import LoaderSettings
from loader_module.tracker import TWIN_REFRESH_SECONDS
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import ManualClock, desired_for, make_settings, model_zip
from tests.loader.service_helpers import announcements, is_state, running_loader, update, wait_state

pytestmark = pytest.mark.integration


def _publish(
    azurite: Azurite, data: bytes, version: str, /, **fields: Unpack[DesiredFields]
) -> dict[str, Any]:
    name = f"edge/{uuid.uuid4().hex}/{version}.zip"
    azurite.upload("models", name, data)
    return desired_for(data, azurite.sas_url("models", name), f"{version}.zip", **fields)


@pytest.fixture
def settings(model_root: Path, azurite: Azurite) -> LoaderSettings:
    return make_settings(model_root, ca_file=azurite.ca_file)


async def test_lost_announcement_is_sent_again_after_restart(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    hub = FakeEdgeHubClient(desired={"$version": 1, **_publish(azurite, model_zip("onnx"), "v1")})
    hub.fail_send = True  # edgeHub refuses messages: the install still completes
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "v1")
    assert announcements(hub) == []
    assert ModelRepository(settings.model_root).current_version() == "v1"
    hub2 = FakeEdgeHubClient(desired=hub.desired)
    async with running_loader(settings, hub2, client):
        await wait_state(hub2, "ready", "v1")
    assert [m["version"] for m in announcements(hub2)] == ["v1"]


async def test_failed_reported_patches_do_not_fail_the_update(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    hub = FakeEdgeHubClient(desired={"$version": 1, **_publish(azurite, model_zip("onnx"), "v1")})
    hub.fail_patch = True
    async with running_loader(settings, hub, client):
        await hub.wait_until(lambda: len(announcements(hub)) == 1)
        hub.fail_patch = False
        await hub.push_desired({"Size": None})  # any patch: the next report goes through
        await wait_state(hub, "ready", "v1")


def _signer() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return key, base64.b64encode(public).decode()


@pytest.mark.parametrize("signed_by", ["trusted", "stranger", "nobody"])
async def test_required_signature(
    signed_by: str, azurite: Azurite, model_root: Path, client: httpx.AsyncClient
) -> None:
    trusted, trusted_public = _signer()
    stranger, _ = _signer()
    settings = make_settings(
        model_root, ca_file=azurite.ca_file, require_signature=True, trusted_keys=trusted_public
    )
    data = model_zip("onnx")
    digest = hashlib.sha256(data).digest()
    extra: DesiredFields = {"content_sha256": digest.hex()}
    if signed_by != "nobody":
        signer = trusted if signed_by == "trusted" else stranger
        extra["signature"] = base64.b64encode(signer.sign(digest)).decode()
    hub = FakeEdgeHubClient(desired={"$version": 1, **_publish(azurite, data, "signed", **extra)})
    async with running_loader(settings, hub, client):
        if signed_by == "trusted":
            await wait_state(hub, "ready", "signed")
        else:
            await wait_state(hub, "failed", "signed")
            assert update(hub)["error"]["code"] == "signature_invalid"
            assert ModelRepository(model_root).installed_versions() == []


class _PatchDuringTwinRead(FakeEdgeHubClient):
    """Delivers desired patches while `get_twin` runs, as a real hub may: one stale, one new."""

    patches: tuple[dict[str, Any], ...] = ()

    async def get_twin(self) -> Twin:
        twin = await super().get_twin()
        assert self.handlers is not None and self.handlers.on_desired_patch is not None
        for patch in self.patches:
            await self.handlers.on_desired_patch(patch)
        return twin


async def test_patches_racing_the_twin_read_apply_in_version_order(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    old = _publish(azurite, model_zip("onnx"), "old")
    new = _publish(azurite, model_zip("tflite"), "new")
    hub = _PatchDuringTwinRead(
        desired={"$version": 5, **_publish(azurite, model_zip("onnx", padding=1), "twin")}
    )
    hub.patches = ({**old, "$version": 4}, {**new, "$version": 6})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "new")
    assert ModelRepository(settings.model_root).installed_versions() == ["new"]


async def test_disk_error_while_installing_is_reported_and_retried_later(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*args: object, **kwargs: object) -> None:
        del args, kwargs
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("loader_module.runner.install_version", no_space)
    hub = FakeEdgeHubClient(desired={"$version": 1, **_publish(azurite, model_zip("onnx"), "v1")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "failed", "v1")
    mu = update(hub)
    assert mu["error"]["code"] == "install_failed" and "No space" in mu["error"]["message"]
    assert mu["nextRetryAt"] is not None
    assert list(ModelRepository(settings.model_root).staging_dir.iterdir()) == []


def _loader_process(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m loader_module` with only `env` (and a PATH), until it exits."""
    return subprocess.run(
        [sys.executable, "-m", "loader_module"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_invalid_settings_stop_the_process_with_a_clear_message() -> None:
    done = _loader_process({"LOADER_MODEL_ROOT": "relative", "LOADER_KEEP_VERSIONS": "0"})
    assert done.returncode == 2
    # The variables the operator sets, not the Python field names.
    assert "LOADER_MODEL_ROOT: " in done.stderr and "LOADER_KEEP_VERSIONS: " in done.stderr
    assert "Traceback" not in done.stderr


def test_outside_iot_edge_the_process_stops_with_one_clear_line(tmp_path: Path) -> None:
    done = _loader_process({"LOADER_MODEL_ROOT": str(tmp_path), "IOTEDGE_DEVICEID": "d1"})
    assert done.returncode == 2
    records = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    errors = [r for r in records if r["level"] == "ERROR"]
    assert len(errors) == 1, done.stderr
    assert "not running as an IoT Edge module" in errors[0]["msg"]
    assert "IOTEDGE_WORKLOADURI" in errors[0]["msg"] and "IOTEDGE_DEVICEID" not in errors[0]["msg"]
    assert "Traceback" not in done.stderr


async def test_patch_lost_while_the_link_was_down_is_found_by_the_twin_refresh(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    hub = FakeEdgeHubClient(desired={"$version": 1, **_publish(azurite, model_zip("onnx"), "v1")})
    async with running_loader(settings, hub, client, clock):
        await wait_state(hub, "ready", "v1")
        apply_patch(hub.desired, _publish(azurite, model_zip("tflite"), "v2"))  # never delivered
        hub.desired["$version"] = 2
        hub.connected = False  # the first refresh fails: the link is still down
        calls = clock.sleep_calls
        clock.advance(TWIN_REFRESH_SECONDS)
        await clock.wait_for_sleep_calls(calls + 1)  # failed, logged, sleeping until the next one
        hub.connected = True
        assert is_state(hub, "ready", "v1")
        clock.advance(TWIN_REFRESH_SECONDS)
        await wait_state(hub, "ready", "v2")
