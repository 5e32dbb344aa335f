"""An update never stalls without a word: whatever goes wrong at whichever step, the update ends as a
reported failure with a code and a retry time, and the retry then succeeds (issue 17, item 4).

Each step is made to raise an exception the loader does not expect (a bug, a library raising
something undocumented) once; every later call works, so the scheduled retry shows the update was not
left half done.
"""

from __future__ import annotations

import importlib
import inspect
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Unpack

import httpx
import pytest

from edge_shared.desired import DesiredFields
from edge_shared.repository import ModelRepository
from edge_tools.azurite import Azurite
from edge_tools.fixtures import digests
from loader_module.edge import make_http_client
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import ManualClock, desired_for, make_settings, model_zip
from tests.loader.service_helpers import running_loader, update, wait_state
from tests.reliability.invariants import assert_consistent

pytestmark = pytest.mark.integration

RETRY_AFTER = 600.0

#: step -> where it is done: `module:Class.method` or `module:function`, the module in `loader_module`
STEPS: dict[str, str] = {
    "persist-state": "state:StateStore.save",
    "report-progress": "reporting:Reporter.show",
    "delta-base": "runner:usable_base",
    "download": "runner:Downloader.fetch",
    "verify-digests": "runner:verify_digests",
    "verify-signature": "runner:verify_signature",
    "unpack": "runner:unpack_model",
    "install": "runner:install_version",
    "activate": "runner:activate",
    "cleanup": "runner:discard",
    "retention": "runner:prune_versions",
    "announce": "reporting:Reporter.announce",
}


class InjectedFault(Exception):
    """Stands for any exception no step documents (not a `LoaderError`, `OSError` or `RepositoryError`)."""


def fail_once(original: Callable[..., Any], path: str) -> Callable[..., Any]:
    """`original`, except that its first call raises `InjectedFault` (with a device path in the text)."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise InjectedFault(f"injected fault while touching {path}")
        return original(*args, **kwargs)

    if inspect.iscoroutinefunction(original):

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise InjectedFault(f"injected fault while touching {path}")
            return await original(*args, **kwargs)

        return async_wrapper
    return wrapper


def _publish(
    azurite: Azurite, data: bytes, version: str, /, **fields: Unpack[DesiredFields]
) -> dict[str, Any]:
    name = f"stalls/{uuid.uuid4().hex}/{version}.zip"
    azurite.upload("models", name, data)
    return desired_for(data, azurite.sas_url("models", name), f"{version}.zip", **fields)


@pytest.mark.parametrize("step", list(STEPS))
async def test_unexpected_exception_at_any_step_is_reported_with_a_code_and_retried(
    step: str, azurite: Azurite, model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(model_root, ca_file=azurite.ca_file, retry_after=RETRY_AFTER)
    module, qualified = STEPS[step].split(":")
    owner: Any = importlib.import_module(f"loader_module.{module}")
    *classes, name = qualified.split(".")
    for cls in classes:
        owner = getattr(owner, cls)
    monkeypatch.setattr(owner, name, fail_once(getattr(owner, name), str(model_root / ".staging" / "x")))
    extra: DesiredFields = {}
    if step == "delta-base":  # only an update with a Delta looks for its base
        extra["delta"] = {
            "base_version": "v0",
            "download_url": "https://127.0.0.1:9/unused.delta",
            "content_sha256": "0" * 64,
            "format": "emdelta/1",
        }
    clock = ManualClock()
    hub = FakeEdgeHubClient(desired={"$version": 1, **_publish(azurite, model_zip("onnx"), "v1", **extra)})
    async with make_http_client(settings) as client, running_loader(settings, hub, client, clock):
        try:
            await wait_state(hub, "failed", "v1", within=15)
        except TimeoutError:
            pytest.fail(f"{step}: the update stalled without a report; last ModelUpdate: {update(hub)}")
        failed = update(hub)
        assert failed["error"]["code"] == "internal_error"
        assert datetime.fromisoformat(failed["nextRetryAt"]) == clock.now() + timedelta(seconds=RETRY_AFTER)
        assert str(model_root) not in failed["error"]["message"], "a device path was reported"
        assert "InjectedFault" in failed["error"]["message"]
        clock.advance(RETRY_AFTER)
        await wait_state(hub, "ready", "v1")
    assert assert_consistent(model_root, installed_before=True) == "v1"
    assert ModelRepository(model_root).current_version() == "v1"


@pytest.mark.parametrize("port", ["99999", "abc"])
async def test_download_url_with_an_impossible_port_is_invalid_desired(model_root: Path, port: str) -> None:
    settings = make_settings(model_root)
    # Written by hand: the builder refuses this URL, as the loader must.
    url = f"https://127.0.0.1:{port}/m/x.zip?sig=SECRETSIG"
    props = {"FileName": "x-1.zip", "DownloadUrl": url, "ContentMD5": digests(model_zip("onnx")).md5_base64}
    hub = FakeEdgeHubClient(desired={"$version": 1, **props})
    async with httpx.AsyncClient() as client, running_loader(settings, hub, client):
        try:
            await wait_state(hub, "failed", within=10)
        except TimeoutError:
            pytest.fail(f"the update stalled without a report; last ModelUpdate: {update(hub)}")
    failed = update(hub)
    assert failed["error"]["code"] == "invalid_desired" and "DownloadUrl" in failed["error"]["message"]
    assert "SECRETSIG" not in str(hub.reported)
