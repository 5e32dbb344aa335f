"""The two modules as two users, as deployed: the loader as its image's uid writes the model volume, the
inference module as another uid only reads it. A publish, a swap and a restart with `current` already
there must all serve (the permission bug: versions installed 0700 with a 0600 manifest and `current`).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_shared.repository import ModelRepository
from edge_tools.fixtures import FixtureCatalog
from edge_tools.stack.processes import RunAs
from edge_tools.stack.stack import LocalStack
from tests.integration.test_system import score, serve, served_version
from tests.integration.users import CannotRunAsUser, module_users

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # Not pytest's tmp_path: its base folder is 0700, which the modules' users could not enter.
    path = Path(tempfile.mkdtemp(prefix="edge-users-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def users(workdir: Path) -> dict[str, RunAs]:
    if os.geteuid() != 0:
        pytest.skip(f"running the modules as other users needs root; this run is uid {os.geteuid()}")
    try:
        return module_users(workdir / "python")
    except CannotRunAsUser as exc:
        pytest.skip(f"no Python with the project that another user can run here: {exc}")


@pytest.fixture(scope="module")
def stack(workdir: Path, users: dict[str, RunAs]) -> Iterator[LocalStack]:
    with LocalStack(workdir / "stack", run_as=users) as running:
        yield running


@pytest.fixture(scope="module")
def image(catalog: FixtureCatalog) -> bytes:
    return catalog.path(catalog.image("one-square-jpeg").file).read_bytes()


def _process_uid(stack: LocalStack, module: str) -> int:
    pid = stack.processes[module].pid
    assert pid is not None
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    real, effective, *_ = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert real == effective
    return int(effective)


def test_each_module_runs_as_its_images_user(stack: LocalStack, users: dict[str, RunAs]) -> None:
    assert users["loader"].uid != users["inference"].uid
    for module in ("loader", "inference"):
        assert _process_uid(stack, module) == users[module].uid != 0


def test_a_publish_and_a_swap_are_served_by_the_other_user(
    stack: LocalStack, catalog: FixtureCatalog, image: bytes, users: dict[str, RunAs]
) -> None:
    first = serve(stack, catalog, "tiny-yolo-1")
    assert score(stack, image)["model"]["version"] == first
    second = serve(stack, catalog, "ssd-lite-1")
    body = score(stack, image)
    assert body["model"] == {"version": second, "runtime": "tflite"}
    assert [d["label"] for d in body["detections"]] == ["person"]
    root = stack.endpoints.model_root
    for path in (root / "current", root / "models" / second, root / "models" / second / "manifest.json"):
        assert path.stat().st_uid == users["loader"].uid  # written by the loader's user, not by root


def test_inference_started_with_current_in_place_serves_it_at_once(
    stack: LocalStack, catalog: FixtureCatalog, image: bytes
) -> None:
    version = serve(stack, catalog, "tiny-yolo-2")
    stack.restart_module("inference")  # returns as soon as /health/live answers
    assert httpx.get(f"{stack.endpoints.inference_url}/health/ready").status_code == 200
    assert served_version(stack) == version == ModelRepository(stack.endpoints.model_root).current_version()
    assert score(stack, image)["model"]["version"] == version


def test_a_volume_left_private_by_an_older_loader_is_refused_clearly_then_repaired(
    stack: LocalStack, catalog: FixtureCatalog, image: bytes
) -> None:
    version = serve(stack, catalog, "ssd-lite-2")
    repo = ModelRepository(stack.endpoints.model_root)
    # What loaders before the fix left: 0700 version folders, 0600 manifests and `current` (every version:
    # one still readable would be served instead, as the start-up fallback to an installed version does).
    installed = repo.installed_versions()
    assert version in installed
    for each in installed:
        repo.version_dir(each).chmod(0o700)
        (repo.version_dir(each) / "manifest.json").chmod(0o600)
    repo.current_path.chmod(0o600)
    inference = stack.restart_module("inference")
    url = stack.endpoints.inference_url
    # Not a crash ("Application startup failed"): alive, not ready, and the log says why.
    assert httpx.get(f"{url}/health/live").status_code == 200
    assert httpx.get(f"{url}/health/ready").status_code == 503
    stack.wait_for(
        "the refusal in the log", lambda: any("permission denied" in line for line in inference.tail)
    )
    stack.restart_module("loader")  # repairs the modes at start (restart returns once it runs)
    stack.wait_for("the loader's repair", lambda: stat.S_IMODE(repo.current_path.stat().st_mode) == 0o644)
    assert stat.S_IMODE(repo.version_dir(version).stat().st_mode) == 0o755
    assert stat.S_IMODE((repo.version_dir(version) / "manifest.json").stat().st_mode) == 0o644
    stack.restart_module("inference")
    assert served_version(stack) == version
    assert score(stack, image)["model"]["version"] == version
