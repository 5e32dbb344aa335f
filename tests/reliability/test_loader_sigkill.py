"""`python -m loader_module` SIGKILLed at random points of updates (download, unpack, install, the switch
of `current`, the announcement), on the real SDK, the edgeHub simulator and Azurite.

After every kill, before the restart: every `models/<v>` is complete (manifest valid, files match
their digests), `current` names one of them (or is absent before the first install). After the
restart the update reaches `ready`, `current` is the new version and its `DLModelOutput` was routed.
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_shared.repository import ModelRepository
from edge_tools.azurite import Azurite
from edge_tools.faultproxy import FaultProxy, Policy
from edgehub_sim.server import EdgeHubSimulator
from tests.integration.conftest_loader import LoaderProcess, is_state, publish, start_simulator
from tests.loader.conftest import model_zip
from tests.reliability.invariants import assert_consistent, poll, rng_for

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

KILLS = 20
WAIT = 60.0
#: The download is throttled so that it is a phase a kill can land in, not a blink.
LINK_BPS = 8 * 1024 * 1024


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[EdgeHubSimulator]:
    simulator = start_simulator(tmp_path / "sim")
    yield simulator
    simulator.stop()


PHASES = ["before-download", "downloading", "unpacking", "installed-not-current", "after-current"]


def _phase(repo: ModelRepository, version: str) -> str:
    """Where an update of `version` stands, judged from the volume alone."""
    if repo.current_version() == version:
        return "after-current"  # announcing, reporting or done
    if (repo.models_dir / version).is_dir():
        return "installed-not-current"
    if repo.staging_dir.is_dir() and any(repo.staging_dir.iterdir()):
        return "unpacking"
    parts = list(repo.downloads_dir.glob("*.part")) if repo.downloads_dir.is_dir() else []
    if parts and any(p.stat().st_size > 0 for p in parts):
        return "downloading"
    return "before-download"


def _reached(repo: ModelRepository, version: str, goal: int) -> bool:
    return PHASES.index(_phase(repo, version)) >= goal


def _announced(simulator: EdgeHubSimulator, version: str) -> int:
    return sum(
        1
        for m in simulator.routed_messages()
        if m.output == "DLModelOutput" and f'"version":"{version}"' in m.body.decode().replace(" ", "")
    )


def _was_announced(simulator: EdgeHubSimulator, version: str) -> bool:
    return _announced(simulator, version) >= 1


def test_loader_sigkill_at_random_points_never_exposes_a_partial_version(
    simulator: EdgeHubSimulator,
    azurite: Azurite,
    model_root: Path,
    tmp_path: Path,
    soak_factor: int,
    reliability_seed: int,
) -> None:
    rng = rng_for(reliability_seed, "loader-sigkill")
    repo = ModelRepository(model_root)
    targets = [*PHASES[1:], "random-time"]
    landed: collections.Counter[str] = collections.Counter()
    deliveries: collections.Counter[int] = collections.Counter()
    installed_before = False
    with FaultProxy(azurite.port, [Policy(throttle_bps=LINK_BPS)]) as proxy:
        loader = LoaderProcess(simulator, azurite, model_root, tmp_path / "loader.log")
        loader.start()
        try:
            for run in range(KILLS * soak_factor):
                version = f"k{run}"
                target = rng.choice(targets)
                data = model_zip(rng.choice(["onnx", "tflite"]), padding=rng.randint(1, 6) * 1024 * 1024)
                context = f"seed {reliability_seed}, run {run}, target {target}, size {len(data)}"
                simulator.set_desired("loader", publish(azurite, data, version, port=proxy.port))
                if target == "random-time":
                    # The random kill point itself (not a synchronisation): anywhere in a ~1 s update.
                    time.sleep(rng.uniform(0.0, 1.2))
                else:
                    # Kill as soon as the update reached the target phase (or passed it: some are short).
                    goal = PHASES.index(target)
                    poll(functools.partial(_reached, repo, version, goal), within=WAIT)
                loader.kill()
                landed[_phase(repo, version)] += 1
                assert_consistent(model_root, installed_before=installed_before)

                loader.start()
                simulator.wait_for(functools.partial(is_state, simulator, "ready", version), WAIT)
                assert assert_consistent(model_root, installed_before=True) == version, context
                simulator.wait_for(functools.partial(_was_announced, simulator, version), WAIT)
                deliveries[_announced(simulator, version)] += 1
                installed_before = True
        finally:
            loader.close()
    logger.info("loader SIGKILLs landed: %s; DLModelOutput copies: %s", dict(landed), dict(deliveries))
    # The kills spread over the update's phases, not all in one.
    assert len(landed) >= 3, dict(landed)
    assert list(repo.staging_dir.iterdir()) == []  # cleaned by the restarts
