"""The loader end to end on the fake edgeHub, downloading from real Azurite over HTTPS."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from pathlib import Path
from typing import Any, Unpack

import httpx
import pytest

from edge_shared.desired import DesiredFields
from edge_shared.merge_patch import apply_patch
from edge_shared.repository import ModelRepository
from edge_tools.azurite import Azurite
from edge_tools.faultproxy import FaultProxy, Policy
from edge_tools.fixtures import digests
from loader_module.edge import make_http_client
from loader_module.settings import LoaderSettings
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import LABELS, ManualClock, desired_for, make_settings, model_zip, zip_bytes
from tests.loader.service_helpers import (
    announcements,
    is_state,
    running_loader,
    status_events,
    update,
    wait_state,
)

pytestmark = pytest.mark.integration


def publish(
    azurite: Azurite,
    data: bytes,
    version: str,
    /,
    *,
    port: int | None = None,
    **fields: Unpack[DesiredFields],
) -> dict[str, Any]:
    """Upload a ZIP and return the desired properties naming it (the reference's three, plus `fields`)."""
    name = f"svc/{uuid.uuid4().hex}/{version}.zip"
    azurite.upload("models", name, data)
    return desired_for(data, azurite.sas_url("models", name, port=port), f"{version}.zip", **fields)


@pytest.mark.parametrize("runtime", ["onnx", "tflite"])
async def test_happy_path_installs_announces_and_reports(
    runtime: str, azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    data = model_zip(runtime, top_folder="model")
    extra: DesiredFields = (
        {"content_sha256": digests(data).sha256, "size": len(data)} if runtime == "tflite" else {}
    )
    hub = FakeEdgeHubClient(desired={"$version": 7, **publish(azurite, data, f"det-{runtime}-1.0", **extra)})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready")
    version = f"det-{runtime}-1.0"
    reported = hub.reported
    assert reported["LatestAIModelFileName"] == f"{version}.zip"
    assert reported["InstalledModels"] == [version]
    mu = update(hub)
    assert mu["version"] == version and mu["desiredVersion"] == 7 and mu["source"] == "full"
    assert mu["bytesDone"] == mu["bytesTotal"] == len(data) and mu["percent"] == 100.0
    assert mu.get("error") is None and mu.get("nextRetryAt") is None
    states = [p["ModelUpdate"]["state"] for p in hub.reported_patches if "ModelUpdate" in p]
    assert (
        states.index("downloading")
        < states.index("verifying")
        < states.index("installing")
        < states.index("ready")
    )

    repo = ModelRepository(settings.model_root)
    assert repo.current_version() == version
    manifest = repo.read_manifest(version)
    model_path, labels_path, _ = repo.model_paths(version)
    assert manifest.runtime == runtime and manifest.file_name == f"{version}.zip"
    assert manifest.source_sha256 == hashlib.sha256(data).hexdigest()
    assert labels_path is not None and labels_path.read_text() == LABELS
    assert [m["version"] for m in announcements(hub)] == [version]
    assert announcements(hub)[0] == {
        "local_model_path": f"models/{version}/model.{runtime}",
        "local_labelmap_path": f"models/{version}/labels.txt",
        "version": version,
        "file_name": f"{version}.zip",
        "runtime": runtime,
        "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
    }
    assert hub.outputs_to("DLModelOutput")[0].content_type == "application/json"
    [event] = status_events(hub)
    assert event["state"] == "ready" and event["bytesDownloaded"] == len(data) and event["error"] is None
    assert list(repo.downloads_dir.iterdir()) == [] and list(repo.staging_dir.iterdir()) == []


async def test_reference_three_property_patch_works(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    hub = FakeEdgeHubClient()
    async with running_loader(settings, hub, client):
        await wait_state(hub, "idle")
        data = model_zip("onnx")
        patch = publish(azurite, data, "tiny-yolov3-1.1")
        assert set(patch) == {"FileName", "DownloadUrl", "ContentMD5"}
        await hub.push_desired(patch)
        await wait_state(hub, "ready", "tiny-yolov3-1.1")
    assert hub.reported["LatestAIModelFileName"] == "tiny-yolov3-1.1.zip"


async def test_wrong_md5_fails_and_keeps_the_previous_version(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    hub = FakeEdgeHubClient(desired={"$version": 1, **publish(azurite, model_zip("onnx"), "v1")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "v1")
        bad = publish(azurite, model_zip("tflite"), "v2")
        bad["ContentMD5"] = "0" * 32
        await hub.push_desired(bad)
        await wait_state(hub, "failed", "v2")
    mu = update(hub)
    assert mu["error"]["code"] == "checksum_mismatch" and mu.get("nextRetryAt") is None
    assert [m["version"] for m in announcements(hub)] == ["v1"]
    repo = ModelRepository(settings.model_root)
    assert repo.current_version() == "v1" and repo.installed_versions() == ["v1"]
    assert list(repo.downloads_dir.iterdir()) == []  # the bad bytes are not kept for a resume
    assert status_events(hub)[-1]["error"]["code"] == "checksum_mismatch"


async def test_invalid_desired_downloads_nothing(
    azurite: Azurite, proxy: FaultProxy, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    props = publish(azurite, model_zip("onnx"), "v1", port=proxy.port)
    props["FileName"] = "../../etc/passwd.zip"
    hub = FakeEdgeHubClient(desired={"$version": 3, **props})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "failed")
    assert update(hub)["error"]["code"] == "invalid_desired"
    assert "FileName" in update(hub)["error"]["message"]
    assert proxy.connections == 0


@pytest.mark.parametrize(("fault", "code"), [("expired", "sas_expired"), ("missing", "not_found")])
async def test_storage_refusals_fail_at_once(
    fault: str,
    code: str,
    azurite: Azurite,
    proxy: FaultProxy,
    settings: LoaderSettings,
    client: httpx.AsyncClient,
) -> None:
    from datetime import timedelta

    data = model_zip("onnx")
    name = f"svc/{uuid.uuid4().hex}/v1.zip"
    azurite.upload("models", name, data)
    if fault == "expired":
        url = azurite.sas_url("models", name, port=proxy.port, expires_in=timedelta(minutes=-1))
    else:
        url = azurite.sas_url("models", name + ".missing", port=proxy.port)
    hub = FakeEdgeHubClient(desired={"$version": 2, **desired_for(data, url, "v1.zip")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "failed", "v1")
        assert update(hub)["error"]["code"] == code and update(hub).get("nextRetryAt") is None
        assert proxy.connections == 1
        if fault == "expired":  # a new URL for the same model resumes the update
            await hub.push_desired({"DownloadUrl": azurite.sas_url("models", name)})
            await wait_state(hub, "ready", "v1")


async def test_three_desired_changes_while_stopped_install_only_the_latest(
    azurite: Azurite, proxy: FaultProxy, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    hub = FakeEdgeHubClient(
        desired={"$version": 1, **publish(azurite, model_zip("onnx"), "v1", port=proxy.port)}
    )
    for index in (2, 3, 4):  # patches the loader never saw, applied to the twin
        apply_patch(
            hub.desired, publish(azurite, model_zip("onnx", padding=index), f"v{index}", port=proxy.port)
        )
        hub.desired["$version"] = index
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "v4")
    assert proxy.connections == 1
    assert ModelRepository(settings.model_root).installed_versions() == ["v4"]
    assert update(hub)["desiredVersion"] == 4


async def test_newer_desired_cancels_the_running_update(
    azurite: Azurite, proxy: FaultProxy, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    proxy.set_policies([Policy(throttle_bps=256 * 1024)])
    slow = publish(azurite, model_zip("onnx", padding=2 * 1024 * 1024), "slow", port=proxy.port)
    hub = FakeEdgeHubClient(desired={"$version": 1, **slow})
    async with running_loader(settings, hub, client):
        await hub.wait_until(lambda: is_state(hub, "downloading", "slow") and update(hub)["bytesDone"] > 0)
        await hub.push_desired(publish(azurite, model_zip("tflite"), "fast"))
        await wait_state(hub, "ready", "fast")
    repo = ModelRepository(settings.model_root)
    assert repo.installed_versions() == ["fast"] and repo.current_version() == "fast"
    assert list(repo.downloads_dir.iterdir()) == []
    assert [m["version"] for m in announcements(hub)] == ["fast"]


async def test_failed_download_is_retried_later_and_never_blocks_a_newer_version(
    azurite: Azurite,
    proxy: FaultProxy,
    settings: LoaderSettings,
    client: httpx.AsyncClient,
    clock: ManualClock,
) -> None:
    proxy.set_policies([Policy(cut_after=0)])
    hub = FakeEdgeHubClient(
        desired={"$version": 1, **publish(azurite, model_zip("onnx"), "v1", port=proxy.port)}
    )
    async with running_loader(settings, hub, client, clock) as service:
        await wait_state(hub, "failed", "v1")
        mu = update(hub)
        assert mu["error"]["code"] == "download_failed" and mu["attempt"] == settings.download_attempts
        assert mu["nextRetryAt"] == "2026-01-01T00:01:00Z"
        assert proxy.connections == settings.download_attempts
        assert service.state.update is not None and service.state.update.next_retry_at is not None
        await clock.sleeping.wait()
        proxy.set_policies([Policy()])
        clock.advance(60)
        await wait_state(hub, "ready", "v1")

    proxy.set_policies([Policy(cut_after=0)])
    apply_patch(hub.desired, publish(azurite, model_zip("onnx", padding=1), "v2", port=proxy.port))
    hub.desired["$version"] = 5
    hub2 = FakeEdgeHubClient(desired=hub.desired, reported=hub.reported)
    # A new client: a pooled keep-alive connection would bypass the proxy's new policy.
    async with make_http_client(settings) as fresh, running_loader(settings, hub2, fresh, clock):
        await wait_state(hub2, "failed", "v2")
        await hub2.push_desired(publish(azurite, model_zip("onnx", padding=2), "v3"))
        await wait_state(hub2, "ready", "v3")


async def test_pending_retry_survives_a_restart(
    azurite: Azurite,
    proxy: FaultProxy,
    settings: LoaderSettings,
    client: httpx.AsyncClient,
    clock: ManualClock,
) -> None:
    proxy.set_policies([Policy(cut_after=0)])
    hub = FakeEdgeHubClient(
        desired={"$version": 1, **publish(azurite, model_zip("onnx"), "v1", port=proxy.port)}
    )
    async with running_loader(settings, hub, client, clock):
        await wait_state(hub, "failed", "v1")
    proxy.set_policies([Policy()])
    proxy.reset_counters()
    hub2 = FakeEdgeHubClient(desired=hub.desired)
    async with running_loader(settings, hub2, client, clock):
        await clock.sleeping.wait()  # waits for nextRetryAt rather than downloading at once
        assert proxy.connections == 0
        assert update(hub2)["state"] == "failed" and update(hub2)["nextRetryAt"] == "2026-01-01T00:01:00Z"
        clock.advance(61)
        await wait_state(hub2, "ready", "v1")


async def test_stopped_download_resumes_after_restart(
    azurite: Azurite, proxy: FaultProxy, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    data = model_zip("onnx", padding=2 * 1024 * 1024)
    proxy.set_policies([Policy(throttle_bps=512 * 1024)])
    hub = FakeEdgeHubClient(desired={"$version": 1, **publish(azurite, data, "big", port=proxy.port)})
    async with running_loader(settings, hub, client):
        await hub.wait_until(lambda: update(hub).get("bytesDone", 0) >= 1024 * 1024)
    parts = list(ModelRepository(settings.model_root).downloads_dir.glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size >= 1024 * 1024
    proxy.set_policies([Policy()])
    hub2 = FakeEdgeHubClient(desired=hub.desired)
    async with running_loader(settings, hub2, client):
        await wait_state(hub2, "ready", "big")
    [event] = status_events(hub2)
    assert event["bytesDownloaded"] <= len(data) - 1024 * 1024


async def test_installed_version_is_only_made_current_and_announced(
    azurite: Azurite,
    proxy: FaultProxy,
    settings: LoaderSettings,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="loader_module")
    v1 = publish(azurite, model_zip("onnx"), "v1", port=proxy.port)
    hub = FakeEdgeHubClient(desired={"$version": 1, **v1})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "v1")
        await hub.push_desired(publish(azurite, model_zip("tflite"), "v2"))
        await wait_state(hub, "ready", "v2")
        connections = proxy.connections
        await hub.push_desired(v1)  # back to v1, still installed
        await wait_state(hub, "ready", "v1")
    assert proxy.connections == connections
    assert update(hub)["source"] == "local"
    assert ModelRepository(settings.model_root).current_version() == "v1"
    assert [m["version"] for m in announcements(hub)] == ["v1", "v2", "v1"]
    switched = [r for r in caplog.records if r.getMessage() == "switched to an installed version"]
    assert [getattr(r, "version", None) for r in switched] == ["v1"]  # an operator sees the switch


async def test_retention_keeps_the_configured_number(
    azurite: Azurite, model_root: Path, client: httpx.AsyncClient
) -> None:
    settings = make_settings(model_root, ca_file=azurite.ca_file, keep_versions=2)
    hub = FakeEdgeHubClient()
    async with running_loader(settings, hub, client):
        for index in range(4):
            await hub.push_desired(publish(azurite, model_zip("onnx", padding=index + 1), f"r{index}"))
            await wait_state(hub, "ready", f"r{index}")
    assert hub.reported["InstalledModels"] == ["r3", "r2"]


@pytest.mark.parametrize(
    ("members", "code"),
    [
        ({"../evil.onnx": b"\x08\x07", "labels.txt": b"a\n"}, "unsafe_archive"),
        ({"model.onnx": b"<html>", "labels.txt": b"a\n"}, "invalid_model"),
    ],
)
async def test_bad_archives_install_nothing(
    members: dict[str, bytes],
    code: str,
    azurite: Azurite,
    settings: LoaderSettings,
    client: httpx.AsyncClient,
) -> None:
    hub = FakeEdgeHubClient(desired={"$version": 1, **publish(azurite, zip_bytes(members), "bad")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "failed", "bad")
    assert update(hub)["error"]["code"] == code
    repo = ModelRepository(settings.model_root)
    assert repo.installed_versions() == [] and repo.current_version() is None
    assert announcements(hub) == []
    assert list(repo.staging_dir.iterdir()) == [] and list(repo.downloads_dir.iterdir()) == []


async def test_methods_get_status_rollback_and_retry(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    hub = FakeEdgeHubClient(desired={"$version": 1, **publish(azurite, model_zip("onnx"), "v1")})
    repo = ModelRepository(settings.model_root)
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "v1")
        await hub.push_desired(publish(azurite, model_zip("tflite"), "v2"))
        await wait_state(hub, "ready", "v2")

        status = await hub.call_method("getStatus")
        assert status.status == 200
        assert status.payload["InstalledModels"] == ["v2", "v1"] and status.payload["CurrentVersion"] == "v2"
        assert status.payload["ModelUpdate"]["state"] == "ready"

        rolled = await hub.call_method("rollback", None)
        assert rolled.status == 200 and rolled.payload["version"] == "v1"
        assert repo.current_version() == "v1"
        assert announcements(hub)[-1]["version"] == "v1"
        assert hub.reported["LatestAIModelFileName"] == "v1.zip"

        assert (await hub.call_method("rollback", {"version": "nope"})).status == 409
        assert (await hub.call_method("rollback", {"version": 5})).status == 400
        assert (await hub.call_method("rollback", {})).payload["error"]["code"] == "rollback_failed"
        assert (await hub.call_method("nope")).status == 404

    hub2 = FakeEdgeHubClient(desired=hub.desired)
    async with running_loader(settings, hub2, client):  # the rollback holds across a restart
        await wait_state(hub2, "ready", "v1")
        assert repo.current_version() == "v1"
        retried = await hub2.call_method("retry")
        assert retried.status == 202
        await wait_state(hub2, "ready", "v2")
        assert repo.current_version() == "v2"


async def test_no_sas_signature_in_logs_reports_messages_or_state(
    azurite: Azurite,
    proxy: FaultProxy,
    settings: LoaderSettings,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from edge_shared.logs import JsonFormatter

    caplog.set_level(logging.DEBUG)
    from datetime import timedelta

    data = model_zip("onnx")
    name = f"svc/{uuid.uuid4().hex}/s1.zip"
    azurite.upload("models", name, data)
    expired = azurite.sas_url("models", name, port=proxy.port, expires_in=timedelta(minutes=-1))
    good = azurite.sas_url("models", name, port=proxy.port)
    proxy.set_policies([Policy(), Policy(cut_after=len(data) // 2), Policy()])
    hub = FakeEdgeHubClient(desired={"$version": 1, **desired_for(data, expired, "s1.zip")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "failed", "s1")
        await hub.push_desired({"DownloadUrl": good})
        await wait_state(hub, "ready", "s1")
    secrets = [httpx.URL(url).params["sig"] for url in (expired, good)]
    loader_text = "\n".join(
        json.dumps(record.__dict__, default=str)
        for record in caplog.records
        if record.name.startswith("loader")
    )
    formatted = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    reported = json.dumps(hub.reported_patches) + json.dumps(hub.reported)
    messages = b"".join(sent.message.data for sent in hub.outputs).decode()
    state = (settings.model_root / ".loader-state.json").read_text()
    assert any("download attempt failed" in r.getMessage() for r in caplog.records)
    for secret in secrets:
        for where in (loader_text, formatted, reported, messages, state):
            assert secret not in where
    assert await asyncio.sleep(0, result=True)


async def test_a_failure_is_reported_even_when_the_state_file_cannot_be_saved(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full or read-only volume must not turn a failed update into a silent, dead update task."""
    hub = FakeEdgeHubClient(desired={"$version": 1, **publish(azurite, model_zip("onnx"), "v1")})
    async with running_loader(settings, hub, client) as service:
        await wait_state(hub, "ready", "v1")

        save = service._store.save

        def refuse_failed_records(state: Any) -> None:
            if state.update is not None and state.update.status == "failed":
                raise OSError(28, "No space left on device")
            save(state)

        monkeypatch.setattr(service._store, "save", refuse_failed_records)
        bad = publish(azurite, model_zip("tflite"), "v2")
        bad["ContentMD5"] = "0" * 32
        await hub.push_desired(bad)
        await wait_state(hub, "failed", "v2")
    assert update(hub)["error"]["code"] == "checksum_mismatch"
    assert ModelRepository(settings.model_root).current_version() == "v1"
