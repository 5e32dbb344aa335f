"""The rollout policy as a table: configurations read back, device states, promotion and halting."""

from __future__ import annotations

from typing import Any

import pytest

from edge_tools.rollout.configurations import (
    Label,
    RingState,
    gated,
    read_rollouts,
    ring_configuration,
    ungated,
)
from edge_tools.rollout.decide import DeviceState, RingCounts, Step, decide, device_state
from edge_tools.rollout.plan import FailureLimit, Ring, RolloutPlan

MODEL = {"FileName": "m-v2.zip", "Version": "v2", "DownloadUrl": "https://blob/m-v2.zip?sig=secret"}


def _plan(limit: FailureLimit | None = None, promote: float = 100.0) -> RolloutPlan:
    rings = (
        Ring(name="canary", condition="tags.ring='canary'"),
        Ring(name="early", condition="tags.ring='early'"),
        Ring(name="all", condition="tags.environment='prod'"),
    )
    return RolloutPlan(
        rollout_id="r7",
        version="v2",
        rings=rings,
        promote_percent=promote,
        failure_limit=limit or FailureLimit(count=0),
        priority=12,
    )


def _hub_documents(plan: RolloutPlan, states: list[RingState]) -> list[dict[str, Any]]:
    documents = []
    for index, state in enumerate(states):
        document = ring_configuration(plan, index, MODEL)
        condition, _ = ungated(document["targetCondition"])
        document["labels"][Label.STATE.value] = state.value
        document["targetCondition"] = (
            condition if state in (RingState.ACTIVE, RingState.PROMOTED) else gated(document["id"], condition)
        )
        document["etag"] = f"e{index}"
        documents.append(document)
    return documents


def test_every_ring_is_a_layered_deployment_carrying_the_whole_model_object() -> None:
    plan = _plan()
    first, second = (ring_configuration(plan, index, MODEL) for index in (0, 1))
    assert first["id"] == "edge-model-r7-0-canary"
    assert first["content"]["modulesContent"] == {
        "$edgeAgent": {},
        "loader": {"properties.desired.Model": MODEL},
    }
    assert first["priority"] == second["priority"] == 12
    assert first["targetCondition"] == "tags.ring='canary'"
    assert second["targetCondition"] == "tags.edgeModelGate='edge-model-r7-1-early' AND (tags.ring='early')"
    assert first["labels"][Label.STATE.value] == "active"
    assert second["labels"][Label.STATE.value] == "pending"
    assert "properties.reported.ModelUpdate.version='v2'" in first["metrics"]["queries"]["ready"]


def test_the_plan_and_state_are_read_back_from_the_hub() -> None:
    plan = _plan(FailureLimit(count=1, percent=20.0), promote=90.0)
    foreign = {"id": "base-deployment", "labels": {}, "targetCondition": "tags.x='y'", "priority": 1}
    records = read_rollouts(
        [foreign, *reversed(_hub_documents(plan, [RingState.PROMOTED, RingState.ACTIVE, RingState.PENDING]))]
    )
    assert list(records) == ["r7"]
    record = records["r7"]
    assert record.plan() == plan
    assert [ring.state for ring in record.rings] == [RingState.PROMOTED, RingState.ACTIVE, RingState.PENDING]
    assert record.state == "running"
    assert record.rings[2].ring.condition == "tags.environment='prod'"


def test_a_rollout_missing_a_ring_is_incomplete_and_not_advanced() -> None:
    documents = _hub_documents(_plan(), [RingState.ACTIVE, RingState.PENDING, RingState.PENDING])
    record = read_rollouts(documents[:2])["r7"]
    assert record.state == "incomplete"
    assert decide(record, {0: RingCounts(targeted=1, ready=1)}).step is Step.NOTHING


@pytest.mark.parametrize(
    ("update", "state"),
    [
        (None, DeviceState.WAITING),
        ({}, DeviceState.WAITING),
        ({"state": "ready", "version": "v1"}, DeviceState.WAITING),
        ({"state": "ready", "version": "v2"}, DeviceState.READY),
        ({"state": "downloading", "version": "v2", "percent": 40}, DeviceState.UPDATING),
        ({"state": "installing", "version": "v2"}, DeviceState.UPDATING),
        (
            {"state": "failed", "version": "v2", "error": {"code": "disk_full", "message": "m"}},
            DeviceState.FAILED,
        ),
        ({"state": "rejected", "version": "v2"}, DeviceState.FAILED),
        ({"state": "exploded", "version": "v2"}, DeviceState.WAITING),
    ],
)
def test_devices_are_classified_from_the_loaders_model_update(
    update: dict[str, Any] | None, state: DeviceState
) -> None:
    assert device_state(update, "v2") is state


def test_ring_counts_treat_members_without_a_report_as_waiting() -> None:
    states = {"d1": DeviceState.READY, "d2": DeviceState.FAILED, "x9": DeviceState.READY}
    assert RingCounts.of(["d1", "d2", "d3"], states) == RingCounts(targeted=3, ready=1, failed=1, waiting=1)


RUNNING = [RingState.ACTIVE, RingState.PENDING, RingState.PENDING]
SECOND = [RingState.PROMOTED, RingState.ACTIVE, RingState.PENDING]
LAST = [RingState.PROMOTED, RingState.PROMOTED, RingState.ACTIVE]


@pytest.mark.parametrize(
    ("states", "limit", "promote", "counts", "step", "ring"),
    [
        # The canary is promoted when all (or the set share) of it is ready.
        (RUNNING, None, 100.0, {0: RingCounts(targeted=2, ready=2)}, Step.PROMOTE, 0),
        (RUNNING, None, 100.0, {0: RingCounts(targeted=2, ready=1, updating=1)}, Step.WAIT, 0),
        (RUNNING, None, 50.0, {0: RingCounts(targeted=2, ready=1, updating=1)}, Step.PROMOTE, 0),
        # A ring that matches nobody waits: it is never promoted by default.
        (RUNNING, None, 100.0, {0: RingCounts()}, Step.WAIT, 0),
        (RUNNING, None, 100.0, {}, Step.WAIT, 0),
        # Failures past the limit halt; at the limit they do not.
        (RUNNING, FailureLimit(count=0), 100.0, {0: RingCounts(targeted=2, ready=1, failed=1)}, Step.HALT, 0),
        (
            RUNNING,
            FailureLimit(count=1),
            50.0,
            {0: RingCounts(targeted=2, ready=1, failed=1)},
            Step.PROMOTE,
            0,
        ),
        (
            SECOND,
            FailureLimit(percent=10),
            100.0,
            {0: RingCounts(targeted=1, ready=1), 1: RingCounts(targeted=20, ready=10, failed=2, updating=8)},
            Step.WAIT,
            1,
        ),
        (
            SECOND,
            FailureLimit(percent=10),
            100.0,
            {0: RingCounts(targeted=1, ready=1), 1: RingCounts(targeted=20, ready=10, failed=3, updating=7)},
            Step.HALT,
            1,
        ),
        # A promoted ring whose device fails later still halts the rollout.
        (
            SECOND,
            FailureLimit(count=0),
            100.0,
            {0: RingCounts(targeted=1, failed=1), 1: RingCounts(targeted=5, ready=5)},
            Step.HALT,
            0,
        ),
        # The last ring promoted finishes the rollout.
        (
            LAST,
            None,
            100.0,
            {
                0: RingCounts(targeted=1, ready=1),
                1: RingCounts(targeted=3, ready=3),
                2: RingCounts(targeted=9, ready=9),
            },
            Step.PROMOTE,
            2,
        ),
    ],
)
def test_the_next_step(
    states: list[RingState],
    limit: FailureLimit | None,
    promote: float,
    counts: dict[int, RingCounts],
    step: Step,
    ring: int,
) -> None:
    record = read_rollouts(_hub_documents(_plan(limit, promote), states))["r7"]
    decision = decide(record, counts)
    assert (decision.step, decision.ring) == (step, ring)
    assert decision.reason


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([RingState.PROMOTED] * 3, "done"),
        ([RingState.HALTED, RingState.HALTED, RingState.HALTED], "halted"),
        ([RingState.PROMOTED, RingState.HALTED, RingState.HALTED], "halted"),
    ],
)
def test_finished_rollouts_are_left_alone(states: list[RingState], expected: str) -> None:
    record = read_rollouts(_hub_documents(_plan(), states))["r7"]
    assert record.state == expected
    decision = decide(record, {index: RingCounts(targeted=1, failed=1) for index in range(3)})
    assert decision.step is Step.NOTHING
    assert expected in decision.reason
