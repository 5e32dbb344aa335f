"""Bugs found by the extractor fuzzing (`test_unpack_fuzz.py`) and a hostile review, now fixed and kept as
regressions.

A ZIP whose checksums match what was published but whose content is broken (the publisher zipped
broken bytes) must be refused as `invalid_model`. `loader_module/unpack.py` used to let low-level
errors through: `zlib.error` from a damaged deflate stream and `RuntimeError` from an encrypted member,
which left the update stuck in `installing` for ever, and `OSError(EINVAL)` from a negative member
offset, reported as `install_failed` and retried every `LOADER_RETRY_AFTER`, for ever. A ZIP holding
both `a` and `a/b` failed while writing, as `install_failed` (retried for ever) with the absolute staging
path in the reported message; it is `unsafe_archive` before a byte is written.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from edge_shared.repository import ModelRepository
from edge_tools.azurite import Azurite
from loader_module.edge import make_http_client
from loader_module.errors import InvalidModelError, LoaderError, UnsafeArchiveError
from loader_module.settings import LoaderSettings
from loader_module.unpack import UnpackLimits, unpack_model
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import desired_for, make_settings, model_zip
from tests.loader.service_helpers import running_loader, update, wait_state
from tests.reliability.corrupt_zips import (
    central_directory_offset_too_large,
    corrupt_deflate_stream,
    encrypted_member,
    file_and_folder,
)
from tests.reliability.invariants import assert_consistent

LIMITS = UnpackLimits(max_members=16, max_unpacked_bytes=8 * 1024 * 1024, min_free_bytes=0)
#: damage -> (what makes it, the error the extractor raises)
BROKEN: dict[str, tuple[Callable[[bytes], bytes], type[LoaderError]]] = {
    "deflate-stream": (corrupt_deflate_stream, InvalidModelError),
    "negative-offset": (central_directory_offset_too_large, InvalidModelError),
    "encrypted-member": (encrypted_member, InvalidModelError),
    "file-and-folder": (file_and_folder, UnsafeArchiveError),
}


@pytest.mark.parametrize("damage", list(BROKEN))
def test_broken_zip_is_refused_before_anything_is_written(damage: str, tmp_path: Path) -> None:
    corrupt, error = BROKEN[damage]
    archive = tmp_path / "a.zip"
    archive.write_bytes(corrupt(model_zip("onnx")))
    with pytest.raises(error) as refused:
        unpack_model(archive, tmp_path / ".staging", LIMITS)
    assert str(tmp_path) not in str(refused.value)
    assert list((tmp_path / ".staging").iterdir()) == []


@pytest.fixture
def settings(model_root: Path, azurite: Azurite) -> LoaderSettings:
    return make_settings(model_root, ca_file=azurite.ca_file, retry_after=3600)


@pytest.fixture
async def client(settings: LoaderSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client(settings) as http:
        yield http


def _publish(azurite: Azurite, data: bytes, version: str) -> dict[str, object]:
    name = f"corrupt/{uuid.uuid4().hex}/{version}.zip"
    azurite.upload("models", name, data)
    return desired_for(data, azurite.sas_url("models", name), f"{version}.zip")


@pytest.mark.integration
@pytest.mark.parametrize("damage", list(BROKEN))
async def test_broken_zip_with_matching_checksum_fails_the_update_and_keeps_the_old_model(
    damage: str,
    azurite: Azurite,
    settings: LoaderSettings,
    client: httpx.AsyncClient,
) -> None:
    corrupt, error = BROKEN[damage]
    hub = FakeEdgeHubClient(desired={"$version": 1, **_publish(azurite, model_zip("onnx"), "v1")})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "v1")
        await hub.push_desired(_publish(azurite, corrupt(model_zip("tflite")), "v2"))
        try:
            await wait_state(hub, "failed", "v2", within=15)
        except TimeoutError:
            pytest.fail(f"no failed report for v2 within 15 s; last ModelUpdate: {update(hub)}")
        failed = update(hub)
        assert failed["error"]["code"] == error.code and failed.get("nextRetryAt") is None
        assert str(settings.model_root) not in failed["error"]["message"]
    assert assert_consistent(settings.model_root, installed_before=True) == "v1"
    assert ModelRepository(settings.model_root).installed_versions() == ["v1"]
