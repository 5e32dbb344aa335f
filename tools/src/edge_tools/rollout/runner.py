"""Rollout actions against a hub: start, advance one step, abort, delete, and the counts they act on.

Each action reads the configurations afresh and writes only through the hub, so two CLIs, or one that
was stopped half-way, converge: promotion and halting are idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_tools.rollout.configurations import (
    Label,
    RingRecord,
    RingState,
    RolloutRecord,
    configuration_id,
    gated,
    read_rollouts,
    ring_configuration,
    ungated,
)
from edge_tools.rollout.decide import Decision, DeviceState, RingCounts, Step, decide, device_state
from edge_tools.rollout.hub import FleetHub, HubCallError
from edge_tools.rollout.plan import RolloutPlan

#: A hub holds at most this many configurations.
HUB_CONFIGURATION_QUOTA = 100
#: Lowest priority a rollout gets when no earlier rollout exists.
BASE_PRIORITY = 10
#: Writes retried when another writer changed a configuration in between (412).
ETAG_RETRIES = 3


class RolloutError(RuntimeError):
    """A rollout action that cannot go on; the message says what exists and what to run next."""


def rollouts(hub: FleetHub) -> dict[str, RolloutRecord]:
    return read_rollouts(hub.list_configurations(HUB_CONFIGURATION_QUOTA))


def find(found: dict[str, RolloutRecord], rollout_id: str) -> RolloutRecord:
    """`rollout_id` among rollouts already read from the hub, or a clear error."""
    record = found.get(rollout_id)
    if record is None:
        raise RolloutError(f"no rollout {rollout_id!r} on this hub (`edge-model rollout status` lists them)")
    return record


def get_rollout(hub: FleetHub, rollout_id: str) -> RolloutRecord:
    return find(rollouts(hub), rollout_id)


def next_priority(existing: dict[str, RolloutRecord]) -> int:
    """Above every rollout that still targets devices, so the new model's layer wins over theirs."""
    live = [r.priority for r in existing.values() if r.state != "halted"]
    return max([BASE_PRIORITY - 1, *live]) + 1


def ring_members(hub: FleetHub, condition: str) -> set[str]:
    return {str(row["deviceId"]) for row in hub.query(f"SELECT deviceId FROM devices WHERE {condition}")}


def device_states(hub: FleetHub, module: str, version: str) -> dict[str, DeviceState]:
    """Every device whose loader works on `version`; the others are `waiting`."""
    sql = (
        f"SELECT * FROM devices.modules WHERE moduleId='{module}' AND "
        f"properties.reported.ModelUpdate.version='{version}'"
    )
    states: dict[str, DeviceState] = {}
    for twin in hub.query(sql):
        reported = (twin.get("properties") or {}).get("reported") or {}
        states[str(twin.get("deviceId"))] = device_state(reported.get("ModelUpdate"), version)
    return states


def started_members(hub: FleetHub, record: RolloutRecord) -> dict[int, set[str]]:
    """The device ids of every started ring, by ring index (pending and halted rings target nobody)."""
    return {
        ring.index: ring_members(hub, ring.ring.condition)
        for ring in record.rings
        if ring.state in (RingState.ACTIVE, RingState.PROMOTED)
    }


def ring_counts(
    hub: FleetHub, record: RolloutRecord, members: dict[int, set[str]] | None = None
) -> dict[int, RingCounts]:
    """Counts for every started ring; `members` when the caller has read them already."""
    members = started_members(hub, record) if members is None else members
    if not members:
        return {}
    states = device_states(hub, record.module, record.version)
    return {index: RingCounts.of(devices, states) for index, devices in members.items()}


def start(hub: FleetHub, plan: RolloutPlan, model: dict[str, Any]) -> RolloutRecord:
    """Create every ring's configuration (the first active); refuse what would fail half-way."""
    existing = hub.list_configurations(HUB_CONFIGURATION_QUOTA)
    ids = {str(config.get("id")) for config in existing}
    if plan.rollout_id in read_rollouts(existing):
        raise RolloutError(f"rollout {plan.rollout_id!r} exists already; choose another --id")
    for index, ring in enumerate(plan.rings):
        if configuration_id(plan.rollout_id, index, ring.name) in ids:
            raise RolloutError(
                f"configuration {configuration_id(plan.rollout_id, index, ring.name)!r} exists"
            )
    if len(existing) + len(plan.rings) > HUB_CONFIGURATION_QUOTA:
        raise RolloutError(
            f"the hub holds {len(existing)} configurations and allows {HUB_CONFIGURATION_QUOTA}: "
            f"{len(plan.rings)} more do not fit (`edge-model rollout delete ID` removes old rollouts)"
        )
    empty = [ring.name for ring in plan.rings if not ring_members(hub, ring.condition)]
    if empty:
        raise RolloutError(f"ring(s) matching no device: {', '.join(empty)}")
    for index in range(len(plan.rings)):
        try:
            hub.create_configuration(ring_configuration(plan, index, model))
        except HubCallError as exc:
            raise RolloutError(
                f"{exc}; rollout {plan.rollout_id!r} was created only in part ({index} of {len(plan.rings)} "
                f"rings): `edge-model rollout abort {plan.rollout_id}` then `rollout delete` removes it"
            ) from None
    return get_rollout(hub, plan.rollout_id)


@dataclass(frozen=True)
class Advanced:
    decision: Decision
    counts: dict[int, RingCounts]
    record: RolloutRecord


def advance(hub: FleetHub, rollout_id: str) -> Advanced:
    """Read, decide and act once."""
    record = get_rollout(hub, rollout_id)
    counts = ring_counts(hub, record)
    decision = decide(record, counts)
    if decision.step is Step.PROMOTE and decision.ring is not None:
        _promote(hub, record, decision.ring)
    elif decision.step is Step.HALT:
        _halt(hub, record, decision.reason)
    if decision.step in (Step.PROMOTE, Step.HALT):
        record = get_rollout(hub, rollout_id)
    return Advanced(decision, counts, record)


def abort(hub: FleetHub, rollout_id: str, reason: str = "aborted by the operator") -> RolloutRecord:
    """Halt every ring: their devices fall back to the layer below (the previous model)."""
    record = get_rollout(hub, rollout_id)
    _halt(hub, record, reason)
    return get_rollout(hub, rollout_id)


def delete(hub: FleetHub, rollout_id: str) -> int:
    """Remove a halted or superseded rollout's configurations; a running one must be aborted first."""
    record = get_rollout(hub, rollout_id)
    if record.state == "running":
        raise RolloutError(
            f"rollout {rollout_id!r} is running: `edge-model rollout abort {rollout_id}` first"
        )
    for ring in record.rings:
        hub.delete_configuration(ring.configuration_id)
    return len(record.rings)


def _promote(hub: FleetHub, record: RolloutRecord, index: int) -> None:
    # The next ring starts before this one is marked, so a CLI stopped in between repeats a no-op.
    following = next((ring for ring in record.rings if ring.index == index + 1), None)
    if following is not None and following.state is RingState.PENDING:
        _rewrite(hub, following, state=RingState.ACTIVE, gate=False)
    current = next(ring for ring in record.rings if ring.index == index)
    _rewrite(hub, current, state=RingState.PROMOTED, gate=False)


def _halt(hub: FleetHub, record: RolloutRecord, reason: str) -> None:
    # Started rings first: their devices' fallback is what matters; pending ones only change a label.
    order = sorted(record.rings, key=lambda ring: ring.state is RingState.PENDING)
    for ring in order:
        if ring.state is not RingState.HALTED:
            _rewrite(hub, ring, state=RingState.HALTED, gate=True, note=reason)


def _rewrite(
    hub: FleetHub, ring: RingRecord, *, state: RingState, gate: bool, note: str | None = None
) -> None:
    """Set a ring's state label and gate, re-reading on an etag conflict (bounded)."""
    for _ in range(ETAG_RETRIES):
        document = hub.get_configuration(ring.configuration_id)
        if document is None:
            raise RolloutError(f"configuration {ring.configuration_id!r} disappeared from the hub")
        _apply_ring_change(document, state=state, gate=gate, note=note)
        try:
            hub.update_configuration(document)
            return
        except HubCallError as exc:
            if exc.status != 412:
                raise
    raise RolloutError(f"configuration {ring.configuration_id!r} kept changing under us (etag conflicts)")


def _apply_ring_change(document: dict[str, Any], *, state: RingState, gate: bool, note: str | None) -> None:
    condition, _ = ungated(str(document.get("targetCondition", "")))
    document["targetCondition"] = gated(str(document["id"]), condition) if gate else condition
    labels = dict(document.get("labels") or {})
    labels[Label.STATE.value] = state.value
    if note is not None:
        labels[Label.NOTE.value] = _label_text(note)
    document["labels"] = labels


def _label_text(text: str) -> str:
    """Label values stay short and plain."""
    return "".join(ch if ch.isprintable() else " " for ch in text)[:120]
