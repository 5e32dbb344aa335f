"""A crash at any step of an install leaves a valid `current`, no half version, and heals on restart.

The crash is a `BaseException` raised inside the step (what the code sees of a SIGKILL is nothing at
all; this checks the on-disk states between steps). Real SIGKILLs of the process are in
`tests/integration/test_loader_e2e.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_shared.repository import MANIFEST_FILE, ModelRepository
from edge_tools.azurite import Azurite
from loader_module.settings import LoaderSettings
from tests.fake_edgehub import FakeEdgeHubClient
from tests.loader.conftest import desired_for, make_settings, model_zip
from tests.loader.service_helpers import announcements, running_loader, wait_state

pytestmark = pytest.mark.integration


class Crash(BaseException):
    """Stands for the process dying: nothing in the loader catches it."""


def _crash(*args: Any, **kwargs: Any) -> None:
    del args, kwargs
    raise Crash


CRASH_POINTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    # manifest written in staging, folder not yet renamed into models/
    "before-rename": lambda mp: mp.setattr("loader_module.install.fsync_dir", _crash),
    # models/v2 complete, `current` still v1
    "before-current": lambda mp: mp.setattr("loader_module.runner.activate", _crash),
    # `current` is v2, DLModelOutput not sent
    "before-announce": lambda mp: mp.setattr("loader_module.reporting.Reporter.announce", _crash),
}


@pytest.fixture
def settings(model_root: Path, azurite: Azurite) -> LoaderSettings:
    return make_settings(model_root, ca_file=azurite.ca_file)


def _publish(azurite: Azurite, data: bytes, version: str) -> dict[str, Any]:
    name = f"crash/{uuid.uuid4().hex}/{version}.zip"
    azurite.upload("models", name, data)
    return desired_for(data, azurite.sas_url("models", name), f"{version}.zip")


def _assert_consistent(repo: ModelRepository) -> None:
    current = repo.current_version()
    assert current is not None
    repo.model_paths(current)  # current names a complete, readable version
    for entry in repo.models_dir.iterdir():
        assert (entry / MANIFEST_FILE).is_file(), f"half-installed {entry.name} is visible"


@pytest.mark.parametrize("point", list(CRASH_POINTS))
async def test_crash_during_install_then_restart_completes(
    point: str,
    azurite: Azurite,
    settings: LoaderSettings,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = ModelRepository(settings.model_root)
    hub = FakeEdgeHubClient(desired={"$version": 1, **_publish(azurite, model_zip("onnx"), "v1")})
    async with running_loader(settings, hub, client) as service:
        await wait_state(hub, "ready", "v1")
        with monkeypatch.context() as patched:
            CRASH_POINTS[point](patched)
            await hub.push_desired(_publish(azurite, model_zip("tflite"), "v2"))
            await service.wait_idle()
        _assert_consistent(repo)
        assert repo.current_version() == ("v2" if point == "before-announce" else "v1")
        assert [m["version"] for m in announcements(hub)] == ["v1"]

    hub2 = FakeEdgeHubClient(desired=hub.desired)
    async with running_loader(settings, hub2, client):
        await wait_state(hub2, "ready", "v2")
    _assert_consistent(repo)
    assert repo.current_version() == "v2"
    assert [m["version"] for m in announcements(hub2)] == ["v2"]
    assert hub2.reported["LatestAIModelFileName"] == "v2.zip"
    assert list(repo.staging_dir.iterdir()) == []
