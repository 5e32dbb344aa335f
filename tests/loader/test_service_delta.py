"""The loader's delta path on the fake edgeHub with real Azurite: a usable delta installs the exact target,
anything wrong with it falls back to the full ZIP in the same update."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import uuid
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Unpack

import httpx
import pytest

from edge_shared.delta import FORMAT
from edge_shared.desired import DesiredFields, desired_patch
from edge_shared.repository import MANIFEST_FILE, ModelRepository
from edge_tools.azurite import Azurite
from edge_tools.delta import make_delta
from edge_tools.faultproxy import FaultProxy, Policy
from edge_tools.fixtures import build_yolo_onnx, coco_labels_text, digests, make_model_zip
from loader_module.edge import make_http_client
from loader_module.settings import LoaderSettings
from loader_module.state import StateStore
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import ManualClock, make_settings
from tests.loader.service_helpers import running_loader, status_events, update, wait_state
from tests.shared.test_delta_apply import ssd_zip, yolo_zip

pytestmark = pytest.mark.integration


@cache
def family_zips(family: str) -> tuple[bytes, bytes]:
    """(v1 ZIP, v2 ZIP) of a fixture family: new weights, same labels."""
    if family == "onnx":
        return yolo_zip("v1"), yolo_zip("v2")
    return ssd_zip("v1"), ssd_zip("v2")


@cache
def delta_bytes(base: bytes, target: bytes, base_version: str = "1.0") -> bytes:
    return make_delta(base, target, base_version=base_version, target_version="2.0").delta


def upload(azurite: Azurite, data: bytes, name: str, *, port: int | None = None) -> str:
    blob = f"delta/{uuid.uuid4().hex}/{name}"
    azurite.upload("models", blob, data)
    return azurite.sas_url("models", blob, port=port)


def full_desired(
    azurite: Azurite,
    data: bytes,
    version: str,
    /,
    *,
    port: int | None = None,
    **fields: Unpack[DesiredFields],
) -> dict[str, Any]:
    """Desired `version`: the full ZIP uploaded, every digest and its size, plus `fields`."""
    d = digests(data)
    return desired_patch(
        f"{version}.zip",
        upload(azurite, data, f"{version}.zip", port=port),
        **(
            DesiredFields(content_md5=d.md5_base64, content_sha256=d.sha256, size=len(data), version=version)
            | fields
        ),
    )


def delta_desired(
    azurite: Azurite,
    target: bytes,
    delta: bytes,
    *,
    base_version: str = "1.0",
    full_port: int | None = None,
    delta_port: int | None = None,
    **delta_changes: Any,
) -> dict[str, Any]:
    """Desired v2.0: the full ZIP and, beside it, `Delta` from `base_version`.

    `delta_changes` overwrite the `Delta` property's wire keys as given, unchecked: how a test sends a
    delta the loader must refuse."""
    d = digests(target)
    desired = desired_patch(
        "2.0.zip",
        upload(azurite, target, "2.0.zip", port=full_port),
        content_md5=d.md5_base64,
        content_sha256=d.sha256,
        size=len(target),
        version="2.0",
        delta={
            "base_version": base_version,
            "download_url": upload(azurite, delta, "2.0.zip.emdelta", port=delta_port),
            "content_sha256": hashlib.sha256(delta).hexdigest(),
            "format": FORMAT,
        },
    )
    desired["Delta"].update(delta_changes)
    return desired


def installed_files(root: Path, version: str) -> dict[str, bytes]:
    folder = ModelRepository(root).version_dir(version)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != MANIFEST_FILE}


@pytest.mark.parametrize("family", ["onnx", "tflite"])
async def test_delta_installs_v2_byte_identical_to_a_full_install(
    family: str, azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    v1, v2 = family_zips(family)
    delta = delta_bytes(v1, v2)
    assert len(delta) < len(v2)
    hub = FakeEdgeHubClient(desired={"$version": 1, **full_desired(azurite, v1, "1.0")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "1.0")
        await hub.push_desired(delta_desired(azurite, v2, delta))
        await wait_state(hub, "ready", "2.0")
    mu = update(hub)
    assert mu["source"] == "delta" and mu["bytesDone"] == mu["bytesTotal"] == len(delta)
    event = status_events(hub)[-1]
    assert event["state"] == "ready" and event["source"] == "delta"
    assert event["bytesDownloaded"] == len(delta)
    repo = ModelRepository(settings.model_root)
    assert repo.current_version() == "2.0" and repo.installed_versions() == ["2.0", "1.0"]
    manifest = repo.read_manifest("2.0")
    assert manifest.source == "delta" and manifest.source_sha256 == hashlib.sha256(v2).hexdigest()
    assert list(repo.downloads_dir.iterdir()) == []

    # The same desired state without `Delta`, on another device: the installed files are the same bytes.
    full_root = tmp_path / "full-device"
    full_root.mkdir()
    full_settings = make_settings(full_root, ca_file=azurite.ca_file)
    full_hub = FakeEdgeHubClient(desired={"$version": 1, **full_desired(azurite, v2, "2.0")})
    async with running_loader(full_settings, full_hub, client):
        await wait_state(full_hub, "ready", "2.0")
    assert update(full_hub)["source"] == "full"
    assert installed_files(settings.model_root, "2.0") == installed_files(full_root, "2.0")
    full_manifest = ModelRepository(full_root).read_manifest("2.0")
    assert manifest.files == full_manifest.files and manifest.model_file == full_manifest.model_file


async def test_label_only_change_travels_in_under_4_kb(
    azurite: Azurite, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    v1 = yolo_zip("v1")
    v2 = yolo_zip("v1", labels=coco_labels_text().replace("person", "human", 1))
    delta = delta_bytes(v1, v2)
    hub = FakeEdgeHubClient(desired={"$version": 1, **full_desired(azurite, v1, "1.0")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "1.0")
        await hub.push_desired(delta_desired(azurite, v2, delta))
        await wait_state(hub, "ready", "2.0")
    assert status_events(hub)[-1]["bytesDownloaded"] == len(delta) < 4096
    assert update(hub)["source"] == "delta"
    _, labels, _ = ModelRepository(settings.model_root).model_paths("2.0")
    assert labels is not None and labels.read_text().startswith("human\n")


def _tampered(delta: bytes) -> bytes:
    data = bytearray(delta)
    data[-20] ^= 0xFF  # inside the payload
    return bytes(data)


#: What goes wrong → (delta bytes, Delta fields changed, is the delta downloaded at all, logged reason).
FAULTS: dict[str, tuple[str, dict[str, Any], bool, str]] = {
    "tampered patch": ("tampered", {}, True, "DeltaIntegrityError"),
    "truncated delta": ("truncated", {}, True, "DeltaFormatError"),
    "wrong base": ("wrong-base", {}, True, "DeltaBaseError"),
    "delta digest mismatch": ("good", {"ContentSHA256": "0" * 64}, True, "differs from Delta.ContentSHA256"),
    "missing base": ("good", {"BaseVersion": "0.9"}, False, "is not installed"),
    "unsupported format": ("good", {"Format": "emdelta/9"}, False, "unsupported delta Format"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_unusable_delta_falls_back_to_the_full_zip_in_the_same_update(
    fault: str,
    azurite: Azurite,
    proxy: FaultProxy,
    settings: LoaderSettings,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="loader_module")
    v1, v2 = family_zips("onnx")
    kind, changes, downloaded, reason = FAULTS[fault]
    good = delta_bytes(v1, v2)
    delta = {
        "good": good,
        "tampered": _tampered(good),
        "truncated": good[:-100],
        # The delta names base 1.0, but was made from another 1.0 than the device has.
        "wrong-base": delta_bytes(
            yolo_zip("v1", labels=coco_labels_text().replace("person", "human", 1)), v2
        ),
    }[kind]
    if "ContentSHA256" not in changes:
        changes = {**changes, "ContentSHA256": hashlib.sha256(delta).hexdigest()}
    hub = FakeEdgeHubClient(desired={"$version": 1, **full_desired(azurite, v1, "1.0")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "1.0")
        await hub.push_desired(delta_desired(azurite, v2, delta, delta_port=proxy.port, **changes))
        await wait_state(hub, "ready", "2.0")
    assert (proxy.connections > 0) is downloaded
    assert update(hub)["source"] == "full"
    event = status_events(hub)[-1]
    assert event["source"] == "full" and event["bytesDownloaded"] == len(v2) and event["error"] is None
    repo = ModelRepository(settings.model_root)
    assert repo.current_version() == "2.0"
    assert repo.read_manifest("2.0").source_sha256 == hashlib.sha256(v2).hexdigest()
    assert list(repo.downloads_dir.iterdir()) == []
    [fallback] = [r for r in caplog.records if r.getMessage() == "delta not used; downloading the full ZIP"]
    assert reason in fallback.__dict__["reason"]


async def test_delta_download_failing_for_good_falls_back_to_the_full_zip(
    azurite: Azurite, proxy: FaultProxy, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    v1, v2 = family_zips("tflite")
    proxy.set_policies([Policy(cut_after=0)] * settings.download_attempts)
    hub = FakeEdgeHubClient(desired={"$version": 1, **full_desired(azurite, v1, "1.0")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "1.0")
        await hub.push_desired(delta_desired(azurite, v2, delta_bytes(v1, v2), delta_port=proxy.port))
        await wait_state(hub, "ready", "2.0")
    assert proxy.connections == settings.download_attempts
    assert update(hub)["source"] == "full"
    assert ModelRepository(settings.model_root).current_version() == "2.0"


async def test_a_failed_delta_is_not_tried_again_when_the_full_download_is_retried(
    azurite: Azurite, proxy: FaultProxy, settings: LoaderSettings, clock: ManualClock
) -> None:
    v1, v2 = family_zips("onnx")
    delta = _tampered(delta_bytes(v1, v2))
    with FaultProxy(azurite.port) as full_proxy:
        async with make_http_client(settings) as http:
            hub = FakeEdgeHubClient(desired={"$version": 1, **full_desired(azurite, v1, "1.0")})
            async with running_loader(settings, hub, http, clock):
                await wait_state(hub, "ready", "1.0")
                full_proxy.set_policies([Policy(cut_after=0)] * settings.download_attempts)
                desired = delta_desired(
                    azurite,
                    v2,
                    delta,
                    full_port=full_proxy.port,
                    delta_port=proxy.port,
                    ContentSHA256=hashlib.sha256(delta).hexdigest(),
                )
                await hub.push_desired(desired)
                await wait_state(hub, "failed", "2.0")
            assert update(hub)["error"]["code"] == "download_failed" and update(hub)["source"] == "full"
            record = StateStore(settings.model_root).load().update
            assert record is not None and record.delta_failed == hashlib.sha256(delta).hexdigest()
            delta_connections = proxy.connections
            full_proxy.set_policies([Policy()])
            hub2 = FakeEdgeHubClient(desired=hub.desired)
            async with running_loader(settings, hub2, http, clock):  # after a restart, at nextRetryAt
                await clock.sleeping.wait()
                clock.advance(61)
                await wait_state(hub2, "ready", "2.0")
    assert proxy.connections == delta_connections
    assert update(hub2)["source"] == "full"


async def test_stopped_delta_download_resumes_after_restart(
    azurite: Azurite, proxy: FaultProxy, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    v1, _ = family_zips("onnx")
    v2 = _with_padding(os.urandom(2 * 1024 * 1024))  # v1's files plus 2 MiB that the delta carries whole
    delta = delta_bytes(v1, v2)
    assert len(delta) > 2 * 1024 * 1024
    proxy.set_policies([Policy(throttle_bps=512 * 1024)])
    hub = FakeEdgeHubClient(desired={"$version": 1, **full_desired(azurite, v1, "1.0")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "1.0")
        await hub.push_desired(delta_desired(azurite, v2, delta, delta_port=proxy.port))
        await hub.wait_until(
            lambda: update(hub).get("source") == "delta" and update(hub).get("bytesDone", 0) >= 1024 * 1024
        )
    [part] = ModelRepository(settings.model_root).downloads_dir.glob("*.delta-*.part")
    assert part.stat().st_size >= 1024 * 1024
    proxy.set_policies([Policy()])
    hub2 = FakeEdgeHubClient(desired=hub.desired)
    async with running_loader(settings, hub2, client):
        await wait_state(hub2, "ready", "2.0")
    assert update(hub2)["source"] == "delta"
    [event] = status_events(hub2)
    assert event["source"] == "delta" and event["bytesDownloaded"] <= len(delta) - 1024 * 1024


def _with_padding(padding: bytes) -> bytes:
    return make_model_zip(
        build_yolo_onnx("v1"),
        "model.onnx",
        coco_labels_text(),
        "coco_classes.txt",
        extra={"pad.bin": padding},
    )


async def test_retention_keeps_the_base_of_a_delta_desired_during_an_install(
    azurite: Azurite, model_root: Path, client: httpx.AsyncClient
) -> None:
    """keep_versions=1: a desired v3 (delta from v1) arrives while v2 installs. The interrupted install
    completes but does not apply retention with the old desired state, so v1 survives for the delta."""
    settings = make_settings(model_root, ca_file=azurite.ca_file, keep_versions=1)
    v1, v2 = family_zips("onnx")
    v3 = yolo_zip("v2", labels=coco_labels_text().replace("person", "human", 1))
    delta = make_delta(v1, v3, base_version="1.0", target_version="3.0").delta
    v3_desired = full_desired(
        azurite,
        v3,
        "3.0",
        delta={
            "base_version": "1.0",
            "download_url": upload(azurite, delta, "3.0.emdelta"),
            "content_sha256": hashlib.sha256(delta).hexdigest(),
            "format": FORMAT,
        },
    )

    pending: list[asyncio.Task[None]] = []

    class PatchWhileInstalling(FakeEdgeHubClient):
        async def patch_reported(self, patch: Mapping[str, Any]) -> None:
            await super().patch_reported(patch)
            state = patch.get("ModelUpdate", {})
            if state.get("state") == "installing" and state.get("version") == "2.0" and not pending:
                pending.append(asyncio.create_task(self.push_desired(v3_desired)))

    hub = PatchWhileInstalling(desired={"$version": 1, **full_desired(azurite, v1, "1.0")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "1.0")
        await hub.push_desired(full_desired(azurite, v2, "2.0"))
        await wait_state(hub, "ready", "3.0")
        await pending[0]
    assert update(hub)["source"] == "delta"
    assert ModelRepository(model_root).installed_versions() == ["3.0"]


async def test_a_new_delta_url_for_the_same_target_is_used_from_the_next_attempt(
    azurite: Azurite, proxy: FaultProxy, settings: LoaderSettings, client: httpx.AsyncClient
) -> None:
    v1, _ = family_zips("onnx")
    v2 = _with_padding(os.urandom(1024 * 1024))
    delta = delta_bytes(v1, v2)
    # The first URL's only connection is slow and cut: the retry must take the URL a patch brought.
    proxy.set_policies([Policy(throttle_bps=256 * 1024, cut_after=512 * 1024)] + [Policy(cut_after=0)] * 10)
    hub = FakeEdgeHubClient(desired={"$version": 1, **full_desired(azurite, v1, "1.0")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "1.0")
        desired = delta_desired(azurite, v2, delta, delta_port=proxy.port)
        await hub.push_desired(desired)
        await hub.wait_until(lambda: update(hub).get("source") == "delta" and update(hub).get("attempt") == 1)
        renewed = {**desired["Delta"], "DownloadUrl": upload(azurite, delta, "2.0.zip.emdelta")}
        await hub.push_desired({"Delta": renewed})
        await wait_state(hub, "ready", "2.0")
    assert proxy.connections == 1  # the old URL was not asked again
    # Attempt 2 meets another blob (412 on If-Match: its ETag differs) and restarts from 0 in attempt 3.
    assert update(hub)["source"] == "delta" and update(hub)["attempt"] >= 2


class Crash(BaseException):
    """Stands for the process dying between the delta's rebuild and the install."""


def _crash(*args: Any, **kwargs: Any) -> None:
    del args, kwargs
    raise Crash


async def test_crash_after_the_rebuild_applies_the_kept_delta_again_without_downloading_it(
    azurite: Azurite,
    proxy: FaultProxy,
    settings: LoaderSettings,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v1, v2 = family_zips("onnx")
    delta = delta_bytes(v1, v2)
    hub = FakeEdgeHubClient(desired={"$version": 1, **full_desired(azurite, v1, "1.0")})
    async with running_loader(settings, hub, client) as service:
        await wait_state(hub, "ready", "1.0")
        with monkeypatch.context() as patched:
            patched.setattr("loader_module.runner.unpack_model", _crash)
            await hub.push_desired(delta_desired(azurite, v2, delta, delta_port=proxy.port))
            await service.wait_idle()
    repo = ModelRepository(settings.model_root)
    assert repo.current_version() == "1.0" and proxy.connections == 1
    [kept] = repo.downloads_dir.glob("*.delta-*.part")
    assert kept.read_bytes() == delta
    hub2 = FakeEdgeHubClient(desired=hub.desired)
    async with running_loader(settings, hub2, client):
        await wait_state(hub2, "ready", "2.0")
    assert proxy.connections == 1  # the complete delta was not asked for again
    assert update(hub2)["source"] == "delta" and repo.current_version() == "2.0"
    assert list(repo.downloads_dir.iterdir()) == []
