"""Signed models through the whole loader (fake edgeHub, real Azurite): refusals install nothing, key
rotation with two trusted keys, and a delta install verifies the signature of the rebuilt ZIP."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge_shared.repository import ModelRepository
from edge_tools.azurite import Azurite
from loader_module.settings import LoaderSettings
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import make_settings
from tests.loader.service_helpers import announcements, running_loader, status_events, update, wait_state
from tests.loader.test_service_delta import delta_bytes, delta_desired, family_zips, full_desired

pytestmark = pytest.mark.integration


def new_key() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    return key, base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(hashlib.sha256(data).digest())).decode()


def signed(azurite: Azurite, data: bytes, version: str, key: Ed25519PrivateKey | None) -> dict[str, Any]:
    if key is None:
        return full_desired(azurite, data, version)
    return full_desired(azurite, data, version, signature=sign(key, data))


def tampered(data: bytes) -> bytes:
    """The same package with one more file: another ZIP, still a valid model."""
    buffer = BytesIO(data)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("notes.txt", "not what was signed\n")
    return buffer.getvalue()


def settings_with(root: Path, azurite: Azurite, *keys: str, required: bool = True) -> LoaderSettings:
    return make_settings(
        root, ca_file=azurite.ca_file, require_signature=required, trusted_keys=",".join(keys)
    )


async def _refused(settings: LoaderSettings, props: dict[str, Any], client: httpx.AsyncClient) -> None:
    hub = FakeEdgeHubClient(desired={"$version": 1, **props})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "failed", props["Version"])
    assert update(hub)["error"]["code"] == "signature_invalid"
    assert status_events(hub)[-1]["error"]["code"] == "signature_invalid"
    repo = ModelRepository(settings.model_root)
    assert repo.installed_versions() == [] and repo.current_version() is None
    assert announcements(hub) == [] and list(repo.downloads_dir.iterdir()) == []


async def test_unsigned_update_is_refused_when_required(
    azurite: Azurite, model_root: Path, client: httpx.AsyncClient
) -> None:
    _, public = new_key()
    v1, _ = family_zips("onnx")
    await _refused(settings_with(model_root, azurite, public), signed(azurite, v1, "1.0", None), client)


async def test_signature_by_an_untrusted_key_is_refused(
    azurite: Azurite, model_root: Path, client: httpx.AsyncClient
) -> None:
    _, public = new_key()
    stranger, _ = new_key()
    v1, _ = family_zips("tflite")
    settings = settings_with(model_root, azurite, public, required=False)  # checked whenever present
    await _refused(settings, signed(azurite, v1, "1.0", stranger), client)


async def test_signed_model_without_trusted_keys_is_refused_before_download_and_retried_later(
    azurite: Azurite, model_root: Path, client: httpx.AsyncClient
) -> None:
    """A Signature that cannot be checked is never silently ignored (issue 17, item 13): the update is
    refused as `signature_unchecked` before a byte is fetched, retried at `nextRetryAt` (the operator
    adds `LOADER_TRUSTED_KEYS`, or calls `retry` once they are there), and then checked for real."""
    key, public = new_key()
    stranger, _ = new_key()
    v1, _ = family_zips("onnx")
    for signer in (key, stranger):  # a valid and an invalid signature are alike: neither can be checked
        props = signed(azurite, v1, "1.0", signer)
        settings = make_settings(model_root, ca_file=azurite.ca_file, retry_after=3600)
        hub = FakeEdgeHubClient(desired={"$version": 1, **props})
        async with running_loader(settings, hub, client):
            await wait_state(hub, "failed", "1.0")
        failed = update(hub)
        assert failed["error"]["code"] == "signature_unchecked" and failed["nextRetryAt"] is not None
        assert "LOADER_TRUSTED_KEYS" in failed["error"]["message"]
        assert failed["bytesDone"] == 0
        repo = ModelRepository(model_root)
        assert repo.installed_versions() == [] and list(repo.downloads_dir.iterdir()) == []
    # Keys configured (the module restarts with the new setting), then `retry`: verified and installed.
    hub = FakeEdgeHubClient(desired={"$version": 1, **signed(azurite, v1, "1.0", key)})
    keyed = settings_with(model_root, azurite, public, required=False)
    async with running_loader(keyed, hub, client) as service:
        await service.retry()
        await wait_state(hub, "ready", "1.0")


async def test_tampered_zip_with_matching_digests_is_refused(
    azurite: Azurite, model_root: Path, client: httpx.AsyncClient
) -> None:
    """Storage and twin both altered (digests of the altered ZIP), but not the signature: refused."""
    key, public = new_key()
    v1, _ = family_zips("onnx")
    props = full_desired(azurite, tampered(v1), "1.0")
    props["Signature"] = sign(key, v1)
    await _refused(settings_with(model_root, azurite, public), props, client)


async def test_key_rotation_accepts_either_trusted_key_then_refuses_the_removed_one(
    azurite: Azurite, model_root: Path, client: httpx.AsyncClient
) -> None:
    old, old_public = new_key()
    new, new_public = new_key()
    v1, v2 = family_zips("onnx")
    both = settings_with(model_root, azurite, old_public, new_public)
    hub = FakeEdgeHubClient(desired={"$version": 1, **signed(azurite, v1, "1.0", old)})
    async with running_loader(both, hub, client):
        await wait_state(hub, "ready", "1.0")
        await hub.push_desired(signed(azurite, v2, "2.0", new))
        await wait_state(hub, "ready", "2.0")

    only_new = settings_with(model_root, azurite, new_public)
    t1, _ = family_zips("tflite")
    hub2 = FakeEdgeHubClient(desired={"$version": 1, **signed(azurite, t1, "3.0", old)})
    async with running_loader(only_new, hub2, client):
        await wait_state(hub2, "failed", "3.0")
        assert update(hub2)["error"]["code"] == "signature_invalid"
        await hub2.push_desired(signed(azurite, t1, "3.1", new))
        await wait_state(hub2, "ready", "3.1")
    assert ModelRepository(model_root).installed_versions() == ["3.1", "2.0", "1.0"]


@pytest.mark.parametrize("signed_over", ["target zip", "delta file"])
async def test_delta_install_verifies_the_signature_of_the_rebuilt_zip(
    signed_over: str, azurite: Azurite, model_root: Path, client: httpx.AsyncClient
) -> None:
    key, public = new_key()
    v1, v2 = family_zips("tflite")
    delta = delta_bytes(v1, v2)
    settings = settings_with(model_root, azurite, public)
    hub = FakeEdgeHubClient(desired={"$version": 1, **signed(azurite, v1, "1.0", key)})
    async with running_loader(settings, hub, client):
        await wait_state(hub, "ready", "1.0")
        props = delta_desired(azurite, v2, delta)
        props["Signature"] = sign(key, v2 if signed_over == "target zip" else delta)
        await hub.push_desired(props)
        await wait_state(hub, "ready" if signed_over == "target zip" else "failed", "2.0")
    repo = ModelRepository(model_root)
    if signed_over == "target zip":
        assert update(hub)["source"] == "delta" and repo.current_version() == "2.0"
    else:  # the rebuilt ZIP is the signed target's bytes or nothing: no fallback would change that
        assert update(hub)["error"]["code"] == "signature_invalid" and update(hub)["source"] == "delta"
        assert repo.installed_versions() == ["1.0"] and repo.current_version() == "1.0"
        assert list(repo.downloads_dir.iterdir()) == []
