"""A model volume that is too small: the update fails with `disk_full` (retried later), the old model stays
installed, current and served; once space is back, the update completes.

The volume is a real size-limited filesystem (a tmpfs mounted for the test; skipped where mounting is
not allowed), plus the settings floor `LOADER_MIN_FREE_BYTES`, which needs no mount.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Unpack

import httpx
import pytest
from PIL import Image

from edge_shared.desired import DesiredFields
from edge_shared.repository import ModelRepository
from edge_tools.azurite import Azurite
from edge_tools.faultproxy import FaultProxy, Policy
from inference_module.api import create_app
from inference_module.settings import InferenceSettings
from loader_module.edge import make_http_client
from tests.fake_edgehub import FakeEdgeHubClient
from tests.inference.helpers import serve_in_thread
from tests.loader.conftest import desired_for, make_settings, model_zip
from tests.loader.service_helpers import running_loader, update, wait_state
from tests.reliability.invariants import assert_consistent

pytestmark = pytest.mark.integration

VOLUME_BYTES = 4 * 1024 * 1024


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: writes past it fail with ENOSPC, as on a full device."""
    mount_point = tmp_path / "small-volume"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={VOLUME_BYTES},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)


def _publish(
    azurite: Azurite, data: bytes, version: str, /, port: int | None = None, **fields: Unpack[DesiredFields]
) -> dict[str, Any]:
    name = f"diskfull/{uuid.uuid4().hex}/{version}.zip"
    azurite.upload("models", name, data)
    return desired_for(data, azurite.sas_url("models", name, port=port), f"{version}.zip", **fields)


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


@contextlib.contextmanager
def _inference(root: Path) -> Iterator[str]:
    """The inference app on the same volume, standalone (it starts from `current`)."""
    settings = InferenceSettings(model_root=root, edgehub=False, host="127.0.0.1", port=0)
    with serve_in_thread(create_app(settings)) as url:
        yield url


def _assert_serves(url: str, version: str) -> None:
    assert httpx.get(f"{url}/model").json()["version"] == version
    scored = httpx.post(f"{url}/score", content=_jpeg(), headers={"Content-Type": "image/jpeg"})
    assert scored.status_code == 200 and scored.json()["model"]["version"] == version


def _fill(directory: Path) -> None:
    """Another writer takes every free byte of the volume."""
    fd = os.open(directory / "filler.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    block = b"\0" * 4096
    try:
        for _ in range(VOLUME_BYTES // len(block) + 16):
            os.write(fd, block)
        pytest.fail("the volume never filled up")
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


async def _expect_disk_full(
    hub: FakeEdgeHubClient, root: Path, url: str, *, within: float = 30
) -> dict[str, Any]:
    await wait_state(hub, "failed", "v2", within=within)
    failed = update(hub)
    assert failed["error"]["code"] == "disk_full", failed
    assert failed["nextRetryAt"] is not None  # retried later by itself
    assert "sig=" not in failed["error"]["message"]
    assert assert_consistent(root, installed_before=True) == "v1"
    assert ModelRepository(root).installed_versions() == ["v1"]
    _assert_serves(url, "v1")
    return failed


@pytest.fixture
async def http(azurite: Azurite, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client(make_settings(tmp_path, ca_file=azurite.ca_file)) as client:
        yield client


async def _install_v1(hub: FakeEdgeHubClient, azurite: Azurite) -> None:
    await hub.push_desired(_publish(azurite, model_zip("onnx"), "v1"))
    await wait_state(hub, "ready", "v1")


async def test_free_space_floor_refuses_before_downloading(
    azurite: Azurite, small_volume: Path, http: httpx.AsyncClient
) -> None:
    # On the small volume the free space moves only with the loader's own writes (a shared disk's does
    # not). The floor leaves room for v1 (16 kB) and its temporary copies, not for v2 on top.
    model_root = small_volume
    data = model_zip("tflite", padding=1024 * 1024)
    stat = os.statvfs(model_root)
    settings = make_settings(
        model_root, ca_file=azurite.ca_file, min_free_bytes=stat.f_bavail * stat.f_frsize - len(data) // 2
    )
    hub = FakeEdgeHubClient()
    with FaultProxy(azurite.port) as proxy:
        async with running_loader(settings, hub, http):
            await _install_v1(hub, azurite)
            with _inference(model_root) as url:
                await hub.push_desired(_publish(azurite, data, "v2", port=proxy.port, size=len(data)))
                failed = await _expect_disk_full(hub, model_root, url)
    assert proxy.connections == 0  # refused from `Size`, before any request
    assert "free" in failed["error"]["message"]


async def test_archive_that_does_not_fit_unpacked_is_disk_full(
    azurite: Azurite, small_volume: Path, http: httpx.AsyncClient
) -> None:
    settings = make_settings(small_volume, ca_file=azurite.ca_file)
    hub = FakeEdgeHubClient()
    async with running_loader(settings, hub, http):
        await _install_v1(hub, azurite)
        with _inference(small_volume) as url:
            # 2.5 MiB downloaded fits; the same again unpacked does not.
            await hub.push_desired(_publish(azurite, model_zip("tflite", padding=2560 * 1024), "v2"))
            await _expect_disk_full(hub, small_volume, url)
    assert list((small_volume / ".staging").iterdir()) == []


async def test_volume_filled_up_during_the_download_is_reported_as_disk_full(
    azurite: Azurite, small_volume: Path, http: httpx.AsyncClient
) -> None:
    settings = make_settings(small_volume, ca_file=azurite.ca_file)
    data = model_zip("tflite", padding=1536 * 1024)
    hub = FakeEdgeHubClient()
    with FaultProxy(azurite.port, [Policy(throttle_bps=512 * 1024)]) as proxy:
        async with running_loader(settings, hub, http):
            await _install_v1(hub, azurite)
            with _inference(small_volume) as url:
                await hub.push_desired(_publish(azurite, data, "v2", port=proxy.port))
                await hub.wait_until(lambda: proxy.downstream_bytes >= 128 * 1024, within=30)
                _fill(small_volume)
                await _expect_disk_full(hub, small_volume, url, within=10)
