"""The rollout policy as a plain function: from what the hub holds and what devices report, the next step.

Nothing here performs I/O, so every promotion and halt rule is unit-tested as a table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from edge_shared.reported import ModelUpdate, UpdateState
from edge_tools.rollout.configurations import RingState, RolloutRecord


class DeviceState(StrEnum):
    READY = "ready"  # reports ready for this version: the inference module serves it
    FAILED = "failed"  # failed or rejected this version
    UPDATING = "updating"  # working on this version
    WAITING = "waiting"  # not on this version yet (the hub has not applied the layer, or offline)


def device_state(model_update: Mapping[str, Any] | None, version: str) -> DeviceState:
    """Classify one device from its loader's reported `ModelUpdate` (malformed reports are `waiting`)."""
    if not model_update:
        return DeviceState.WAITING
    try:
        update = ModelUpdate.model_validate(model_update)
    except ValueError:
        return DeviceState.WAITING
    if update.version != version:
        return DeviceState.WAITING
    if update.state is UpdateState.READY:
        return DeviceState.READY
    if update.state in (UpdateState.FAILED, UpdateState.REJECTED):
        return DeviceState.FAILED
    return DeviceState.UPDATING


@dataclass(frozen=True)
class RingCounts:
    targeted: int = 0
    ready: int = 0
    failed: int = 0
    updating: int = 0
    waiting: int = 0

    @classmethod
    def of(cls, members: Iterable[str], states: Mapping[str, DeviceState]) -> RingCounts:
        """Counts over a ring's members; a member whose loader twin was not found is `waiting`."""
        tally = dict.fromkeys(DeviceState, 0)
        total = 0
        for device in members:
            total += 1
            tally[states.get(device, DeviceState.WAITING)] += 1
        return cls(
            targeted=total,
            ready=tally[DeviceState.READY],
            failed=tally[DeviceState.FAILED],
            updating=tally[DeviceState.UPDATING],
            waiting=tally[DeviceState.WAITING],
        )


class Step(StrEnum):
    NOTHING = "nothing"  # halted, done, or not fully created: nothing to advance
    WAIT = "wait"
    PROMOTE = "promote"  # the ring is done: start the next one (or finish, after the last)
    HALT = "halt"


@dataclass(frozen=True)
class Decision:
    step: Step
    ring: int | None = None
    reason: str = ""


def decide(record: RolloutRecord, counts: Mapping[int, RingCounts]) -> Decision:
    """The next step for a rollout, given each started ring's counts (by ring index)."""
    if record.state == "incomplete":
        return Decision(Step.NOTHING, reason="not every ring's configuration exists: run `rollout abort`")
    if record.state != "running":
        return Decision(Step.NOTHING, reason=f"the rollout is {record.state}")
    started = [ring for ring in record.rings if ring.state in (RingState.ACTIVE, RingState.PROMOTED)]
    for ring in started:
        ring_counts = counts.get(ring.index, RingCounts())
        if record.failure_limit.exceeded(ring_counts.failed, ring_counts.targeted):
            return Decision(
                Step.HALT,
                ring.index,
                f"ring {ring.ring.name}: {ring_counts.failed} of {ring_counts.targeted} devices failed "
                f"(limit: {record.failure_limit.describe()})",
            )
    active = next((ring for ring in record.rings if ring.state is RingState.ACTIVE), None)
    if active is None:
        return Decision(Step.NOTHING, reason="no active ring")
    ring_counts = counts.get(active.index, RingCounts())
    if ring_counts.targeted == 0:
        return Decision(Step.WAIT, active.index, f"ring {active.ring.name} matches no device")
    needed = record.plan().ready_needed(ring_counts.targeted)
    if ring_counts.ready >= needed:
        return Decision(
            Step.PROMOTE,
            active.index,
            f"ring {active.ring.name}: {ring_counts.ready} of {ring_counts.targeted} ready (needed {needed})",
        )
    return Decision(
        Step.WAIT,
        active.index,
        f"ring {active.ring.name}: {ring_counts.ready} of {ring_counts.targeted} ready, {needed} needed",
    )
