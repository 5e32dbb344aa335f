"""How a rollout is written into IoT Hub configurations, and read back from them.

A rollout is one layered deployment per ring, all created at the start with the same content (the
loader's whole `Model` desired object, so two layers never mix their keys) and the same priority, above
every earlier rollout's. A ring that has not started, or that was halted, keeps its condition behind a
gate no device matches (`tags.edgeModelGate='<id>' AND (<condition>)`): the hub holds the whole plan
and its state in the configurations' target conditions and labels, so the CLI can stop and resume from
any machine, and `rollout status` can always say what exists.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from edge_tools.rollout.plan import FailureLimit, Ring, RolloutPlan

ID_PREFIX = "edge-model-"
GATE_TAG = "edgeModelGate"


class RingState(StrEnum):
    PENDING = "pending"  # gated: waits for the ring before it
    ACTIVE = "active"  # targets its devices; promotion is being watched
    PROMOTED = "promoted"  # its devices are done; the next ring is active (stays targeted)
    HALTED = "halted"  # gated again: its devices fall back to the layer below


class Label(StrEnum):
    ROLLOUT = "edgeModelRollout"
    RING = "edgeModelRing"
    INDEX = "edgeModelRingIndex"
    RINGS = "edgeModelRingCount"
    VERSION = "edgeModelVersion"
    MODULE = "edgeModelModule"
    PROMOTE_AT = "edgeModelPromoteAt"
    MAX_FAILED = "edgeModelMaxFailed"
    MAX_FAILED_PERCENT = "edgeModelMaxFailedPercent"
    STATE = "edgeModelState"
    NOTE = "edgeModelNote"


def configuration_id(rollout_id: str, index: int, ring: str) -> str:
    return f"{ID_PREFIX}{rollout_id}-{index}-{ring}"


def gated(configuration_id: str, condition: str) -> str:
    """The condition with a gate no device passes (no device carries this tag value)."""
    return f"tags.{GATE_TAG}='{configuration_id}' AND ({condition})"


def ungated(target_condition: str) -> tuple[str, bool]:
    """(the ring's own condition, whether it was gated)."""
    prefix = f"tags.{GATE_TAG}='"
    if target_condition.startswith(prefix):
        _, sep, rest = target_condition.partition("' AND (")
        if sep and rest.endswith(")"):
            return rest[:-1], True
    return target_condition, False


def module_query(module: str, version: str, condition: str) -> str:
    return (
        f"SELECT deviceId FROM devices.modules WHERE moduleId='{module}' AND "
        f"properties.reported.ModelUpdate.version='{version}' AND ({condition})"
    )


def ring_configuration(plan: RolloutPlan, index: int, model: dict[str, Any]) -> dict[str, Any]:
    """The configuration document for ring `index`; the first ring starts active, the others gated."""
    ring = plan.rings[index]
    config_id = configuration_id(plan.rollout_id, index, ring.name)
    state = RingState.ACTIVE if index == 0 else RingState.PENDING
    limit = plan.failure_limit
    labels = {
        Label.ROLLOUT: plan.rollout_id,
        Label.RING: ring.name,
        Label.INDEX: str(index),
        Label.RINGS: str(len(plan.rings)),
        Label.VERSION: plan.version,
        Label.MODULE: plan.module,
        Label.PROMOTE_AT: f"{plan.promote_percent:g}",
        Label.MAX_FAILED: "" if limit.count is None else str(limit.count),
        Label.MAX_FAILED_PERCENT: "" if limit.percent is None else f"{limit.percent:g}",
        Label.STATE: state.value,
    }
    return {
        "id": config_id,
        "schemaVersion": "1.0",
        "labels": {str(key): value for key, value in labels.items()},
        "content": {"modulesContent": {"$edgeAgent": {}, plan.module: {"properties.desired.Model": model}}},
        "targetCondition": ring.condition if index == 0 else gated(config_id, ring.condition),
        "priority": plan.priority,
        # Fleet-wide counts for this version, shown beside the deployment in the portal and `az`.
        "metrics": {
            "queries": {
                "ready": module_query(
                    plan.module, plan.version, "properties.reported.ModelUpdate.state='ready'"
                ),
                "failed": module_query(
                    plan.module,
                    plan.version,
                    "properties.reported.ModelUpdate.state='failed' OR "
                    "properties.reported.ModelUpdate.state='rejected'",
                ),
            }
        },
    }


class RingRecord(BaseModel):
    """One ring as the hub holds it."""

    model_config = ConfigDict(frozen=True)

    configuration_id: str
    index: int
    ring: Ring
    state: RingState
    note: str = ""
    etag: str = ""


class RolloutRecord(BaseModel):
    """A rollout read back from its configurations."""

    model_config = ConfigDict(frozen=True)

    rollout_id: str
    version: str
    module: str
    priority: int
    promote_percent: float
    failure_limit: FailureLimit
    ring_count: int
    rings: tuple[RingRecord, ...]

    @property
    def complete(self) -> bool:
        """Every ring was created (a start that failed half-way leaves fewer)."""
        return len(self.rings) == self.ring_count and [r.index for r in self.rings] == list(
            range(self.ring_count)
        )

    @property
    def state(self) -> str:
        """`halted`, `done` (every ring promoted), `incomplete`, or `running`."""
        states = {record.state for record in self.rings}
        if RingState.HALTED in states:
            return "halted"
        if not self.complete:
            return "incomplete"
        if states == {RingState.PROMOTED}:
            return "done"
        return "running"

    @property
    def note(self) -> str:
        return next((record.note for record in self.rings if record.note), "")

    def plan(self) -> RolloutPlan:
        return RolloutPlan(
            rollout_id=self.rollout_id,
            version=self.version,
            module=self.module,
            rings=tuple(record.ring for record in self.rings),
            promote_percent=self.promote_percent,
            failure_limit=self.failure_limit,
            priority=self.priority,
        )


def read_rollouts(configurations: list[dict[str, Any]]) -> dict[str, RolloutRecord]:
    """Group the hub's configurations into rollouts; configurations this CLI did not make are ignored."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for config in configurations:
        labels = config.get("labels") or {}
        rollout = labels.get(Label.ROLLOUT)
        if isinstance(rollout, str) and str(config.get("id", "")).startswith(ID_PREFIX):
            grouped.setdefault(rollout, []).append(config)
    return {rollout_id: _record(rollout_id, configs) for rollout_id, configs in grouped.items()}


def _record(rollout_id: str, configs: list[dict[str, Any]]) -> RolloutRecord:
    rings: list[RingRecord] = []
    for config in configs:
        labels = config["labels"]
        condition, _ = ungated(str(config.get("targetCondition", "")))
        rings.append(
            RingRecord(
                configuration_id=config["id"],
                index=int(labels.get(Label.INDEX, "0")),
                ring=Ring(name=labels.get(Label.RING, "?"), condition=condition),
                state=RingState(labels.get(Label.STATE, RingState.PENDING)),
                note=labels.get(Label.NOTE, ""),
                etag=str(config.get("etag", "")),
            )
        )
    rings.sort(key=lambda record: record.index)
    first = configs[0]["labels"]
    max_failed = first.get(Label.MAX_FAILED, "")
    max_percent = first.get(Label.MAX_FAILED_PERCENT, "")
    return RolloutRecord(
        rollout_id=rollout_id,
        version=first.get(Label.VERSION, ""),
        module=first.get(Label.MODULE, "loader"),
        priority=int(configs[0].get("priority", 0)),
        promote_percent=float(first.get(Label.PROMOTE_AT, "100")),
        failure_limit=FailureLimit(
            count=int(max_failed) if max_failed else None, percent=float(max_percent) if max_percent else None
        ),
        ring_count=int(first.get(Label.RINGS, len(configs))),
        rings=tuple(rings),
    )
