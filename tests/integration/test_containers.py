"""The images users deploy, built and run: `make images` then `make compose-test`, as processes.

Podman is installed from Debian when missing (root only); without root and without an engine the test
skips and says why. From nothing it takes about 5 minutes (debootstrap, bases, four images); with the
engine's cache warm, well under a minute.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from edge_tools.fixtures import FixtureCatalog
from edge_tools.images.build import IMAGES, REPO_ROOT
from edge_tools.images.engine import docker_works, select_engine
from edge_tools.images.sizes import markdown, measure

pytestmark = pytest.mark.integration

#: Budgets from docs/operations.md: images fit for small devices.
MAX_SIZE = {"loader": 200_000_000, "inference": 400_000_000}


def _images(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_tools.images", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _explain(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


@pytest.mark.timeout(1800)
def test_the_images_build_fit_their_budgets_and_the_compose_topology_serves_and_swaps(
    catalog: FixtureCatalog,
) -> None:
    del catalog  # built into build/fixtures, which the simulator's container mounts
    if os.geteuid() != 0 and shutil.which("podman") is None and not docker_works():
        pytest.skip("no container engine: podman is installed only as root, and Docker does not answer")
    built = _images("build", timeout=1700)
    assert built.returncode == 0, _explain(built)
    engine = select_engine(None, REPO_ROOT / "build")
    for spec in IMAGES:
        if spec.name in MAX_SIZE:
            image = measure(engine, spec.tag)
            assert image.size < MAX_SIZE[spec.name], markdown([image])
    run = _images("compose-test", timeout=900)
    assert run.returncode == 0, _explain(run)
    assert "== compose test passed" in run.stdout
    assert ", 0 failed, by version {'tiny-yolo-1': " in run.stdout  # answers from both, none failed
