"""Crashes of the edgeHub simulator and of the inference module under a running update, on one
`LocalStack` (real Azurite, simulator, loader and inference processes, wired as `deployment.json`).

Builds on `tests/integration/test_system.py` (which kills the simulator mid-download and restarts
inference once): here the simulator also dies *during the announcement* (the `DLModelOutput` send is in
its socket, unread, when it is killed), each case checks how many announcements were routed, and
inference is killed repeatedly at random moments around swaps.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_shared.repository import ModelRepository
from edge_tools.faultproxy import FaultProxy, Policy
from edge_tools.fixtures import FixtureCatalog
from edge_tools.publish.connstr import HubConnection
from edge_tools.publish.sas import hub_sas_token
from edge_tools.stack.demo import publish, wait_until_serving
from edge_tools.stack.stack import LocalStack, read_env_file
from tests.integration.test_system import full_desired, model_update, padded_zip, served_version, unique
from tests.reliability.invariants import assert_consistent, poll, rng_for

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

WAIT = 60.0
#: The SDK retries its connection every ~10 s: long enough for one or two retries after a restart.
RECONNECT_WAIT = 90.0
INFERENCE_KILLS = 4
SIMULATOR_KILLS = 1
MQTT_PORT = 8883


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("reliability-stack")) as running:
        yield running


def routed_announcements(stack: LocalStack, version: str) -> int:
    """`DLModelOutput` messages for `version` that the simulator routed to inference (its recording)."""
    endpoints = stack.endpoints
    connection = HubConnection.parse(endpoints.hub_connection_string)
    token = hub_sas_token(connection.host, connection.key, connection.key_name)
    response = httpx.get(
        f"https://{connection.host}/sim/messages",
        params={"sink": "module"},
        headers={"Authorization": token},
        verify=ssl.create_default_context(cafile=str(endpoints.hub_ca_file)),
        timeout=10.0,
    )
    response.raise_for_status()
    found = 0
    for message in response.json():
        body = message.get("body")
        if message.get("output") == "DLModelOutput" and body and json.loads(body).get("version") == version:
            found += 1
    return found


def _simulator_address(stack: LocalStack) -> str:
    return read_env_file(stack.workdir / "edgehub" / "env" / "loader.env")["IOTEDGE_GATEWAYHOSTNAME"]


def unread_mqtt_bytes(address: str) -> int:
    """Bytes clients sent to the simulator's MQTT port that it has not read (from /proc/net/tcp)."""
    local = f"{socket.inet_aton(address)[::-1].hex().upper()}:{MQTT_PORT:04X}"
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "01":  # ESTABLISHED
            total += int(fields[4].split(":")[1], 16)
    return total


def _ready(stack: LocalStack, version: str) -> bool:
    update = model_update(stack)
    return update.get("version") == version and update.get("state") == "ready"


def _active(stack: LocalStack, version: str) -> bool:
    return (stack.reported("inference").get("ActiveModel") or {}).get("version") == version


def _check_end_state(stack: LocalStack, version: str) -> int:
    """The update completed and inference serves it; returns how many announcements were routed."""
    wait_until_serving(stack, version, timeout=RECONNECT_WAIT)
    assert assert_consistent(stack.endpoints.model_root, installed_before=True) == version
    stack.wait_for("the announcement to be routed", lambda: routed_announcements(stack, version) >= 1)
    assert served_version(stack) == version
    return routed_announcements(stack, version)


def test_simulator_killed_during_the_download_update_completes_and_is_announced(
    stack: LocalStack, catalog: FixtureCatalog, soak_factor: int
) -> None:
    for _ in range(SIMULATOR_KILLS * soak_factor):
        copies = _kill_simulator_during_download(stack, catalog)
        assert copies in (1, 2), f"{copies} announcements routed"
        logger.info("simulator killed during download: %d announcement(s) routed", copies)


def _kill_simulator_during_download(stack: LocalStack, catalog: FixtureCatalog) -> int:
    assert stack.azurite is not None
    data = padded_zip(catalog, "tiny-yolo-2", padding=1024 * 1024)
    version = unique("sim-kill-download")
    name = f"reliability/{version}.zip"
    stack.azurite.upload("models", name, data)
    with FaultProxy(stack.azurite.port, [Policy(throttle_bps=256 * 1024)]) as proxy:
        desired = full_desired(version, stack.azurite.sas_url("models", name, port=proxy.port), data)
        with stack.hub() as hub:
            hub.patch_module_desired(stack.endpoints.device_id, "loader", desired)
        stack.wait_for("the download to start", lambda: proxy.downstream_bytes >= 64 * 1024, timeout=WAIT)
        stack.restart_simulator(kill=True)
        assert proxy.downstream_bytes < len(data)  # killed mid-download
        return _check_end_state(stack, version)


def test_simulator_killed_during_the_announcement_update_completes_and_is_announced(
    stack: LocalStack, catalog: FixtureCatalog, soak_factor: int
) -> None:
    for _ in range(SIMULATOR_KILLS * soak_factor):
        copies = _kill_simulator_during_announcement(stack, catalog)
        assert copies in (1, 2), f"{copies} announcements routed"
        logger.info("simulator killed during the announcement: %d announcement(s) routed", copies)


def _kill_simulator_during_announcement(stack: LocalStack, catalog: FixtureCatalog) -> int:
    assert stack.azurite is not None
    repo = ModelRepository(stack.endpoints.model_root)
    # A big file makes unpacking and fsyncing last long enough to freeze the simulator before the send.
    data = padded_zip(catalog, "ssd-lite-2", padding=48 * 1024 * 1024)
    version = unique("sim-kill-announce")
    name = f"reliability/{version}.zip"
    stack.azurite.upload("models", name, data)
    address = _simulator_address(stack)
    desired = full_desired(version, stack.azurite.sas_url("models", name), data)
    with stack.hub() as hub:
        hub.patch_module_desired(stack.endpoints.device_id, "loader", desired)
    # Unpacking starts once the `installing` report was acknowledged: from here until the announcement
    # the loader does not talk to edgeHub, so a frozen simulator does not hold it up.
    unpacking = poll(lambda: any(repo.staging_dir.glob("unpack-*")), within=WAIT)
    assert unpacking, "the loader never started unpacking"
    simulator = stack.processes["edgehub"]
    assert simulator.pid is not None
    os.killpg(simulator.pid, signal.SIGSTOP)  # frozen: it reads nothing more; SIGKILL follows
    try:
        assert repo.current_version() != version, "installed before the freeze: the send was not in doubt"
        baseline = unread_mqtt_bytes(address)
        assert poll(lambda: repo.current_version() == version, within=WAIT), "the install never finished"
        # The announcement (a PUBLISH of a few hundred bytes) sits unread in the frozen simulator's socket.
        sent = poll(lambda: unread_mqtt_bytes(address) >= baseline + 200, within=WAIT)
        assert sent, "the loader did not send DLModelOutput"
    finally:
        stack.restart_simulator(kill=True)  # SIGKILL works on a stopped process
    return _check_end_state(stack, version)


def test_inference_killed_at_random_moments_around_swaps_serves_current(
    stack: LocalStack, catalog: FixtureCatalog, soak_factor: int, reliability_seed: int
) -> None:
    rng = rng_for(reliability_seed, "inference-sigkill")
    models = ["tiny-yolo-1", "ssd-lite-1", "tiny-yolo-2", "ssd-lite-2"]
    repo = ModelRepository(stack.endpoints.model_root)
    landed = {"before-install": 0, "after-install": 0}
    for run in range(INFERENCE_KILLS * soak_factor):
        model_id = models[run % len(models)]
        version = unique(model_id)
        publish(stack, catalog.path(catalog.model(model_id).zip_file), version)
        # The random kill point (not a synchronisation): before the install, during the swap or after it;
        # a DLModelOutput routed while inference is down waits in its queue.
        time.sleep(rng.uniform(0.0, 0.5))
        landed["after-install" if repo.current_version() == version else "before-install"] += 1
        stack.restart_module("inference", kill=True)
        wait_until_serving(stack, version, timeout=WAIT)
        assert served_version(stack) == repo.current_version() == version, (
            f"seed {reliability_seed}, run {run}"
        )
        stack.wait_for("ActiveModel reported", functools.partial(_active, stack, version), timeout=WAIT)
    logger.info("inference SIGKILLs landed: %s", landed)
