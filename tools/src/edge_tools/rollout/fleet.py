"""The fleet as `edge-model fleet` shows it: devices per ring, per update state and per version.

Built from three kinds of query results (the loader's and the inference module's module twins, and each
ring's device ids), so the same view works for a simulator fleet and a real hub.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from edge_tools.rollout.configurations import RolloutRecord
from edge_tools.rollout.decide import RingCounts


class DeviceRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    device_id: str
    state: str  # the loader's ModelUpdate.state, or "unknown" before it reports
    version: str | None  # the version that update is about
    serving: str | None  # the inference module's ActiveModel.version, where one runs
    error: str | None = None  # the error code of a failed/rejected update
    rings: tuple[str, ...] = ()


def _reported(twin: Mapping[str, Any]) -> Mapping[str, Any]:
    properties = twin.get("properties")
    reported = properties.get("reported") if isinstance(properties, Mapping) else None
    return reported if isinstance(reported, Mapping) else {}


def _field(value: object, key: str) -> str | None:
    if isinstance(value, Mapping):
        found = value.get(key)
        return str(found) if isinstance(found, str | int) else None
    return None


def device_rows(
    loader_twins: Iterable[Mapping[str, Any]],
    inference_twins: Iterable[Mapping[str, Any]],
    ring_members: Mapping[str, set[str]],
) -> list[DeviceRow]:
    """One row per device that has a loader module twin, sorted by id."""
    serving = {
        str(twin.get("deviceId")): _field(_reported(twin).get("ActiveModel"), "version")
        for twin in inference_twins
    }
    rows = []
    for twin in loader_twins:
        device = str(twin.get("deviceId"))
        update = _reported(twin).get("ModelUpdate")
        rows.append(
            DeviceRow(
                device_id=device,
                state=_field(update, "state") or "unknown",
                version=_field(update, "version"),
                serving=serving.get(device),
                error=_field(update.get("error") if isinstance(update, Mapping) else None, "code"),
                rings=tuple(name for name, members in ring_members.items() if device in members),
            )
        )
    return sorted(rows, key=lambda row: row.device_id)


def summary(
    rows: list[DeviceRow], record: RolloutRecord | None, counts: Mapping[int, RingCounts]
) -> dict[str, Any]:
    """The machine-readable view (`--json`); the text view prints the same numbers."""
    rings = []
    if record is not None:
        for ring in record.rings:
            ring_counts = counts.get(ring.index)
            rings.append(
                {
                    "name": ring.ring.name,
                    "state": ring.state.value,
                    "condition": ring.ring.condition,
                    "counts": None if ring_counts is None else vars(ring_counts),
                }
            )
    return {
        "devices": len(rows),
        "states": dict(sorted(Counter(row.state for row in rows).items())),
        "versions": dict(sorted(Counter(row.version or "-" for row in rows).items())),
        "serving": dict(sorted(Counter(row.serving for row in rows if row.serving).items())),
        "rollout": None
        if record is None
        else {
            "id": record.rollout_id,
            "version": record.version,
            "state": record.state,
            "priority": record.priority,
            "note": record.note,
            "rings": rings,
        },
        "deviceList": [row.model_dump(mode="json") for row in rows],
    }


def render_rollouts(listing: list[dict[str, Any]]) -> str:
    """`rollout status` without an id: one line a rollout, lowest priority first."""
    if not listing:
        return "no rollouts on this hub\n"
    table: list[tuple[str, ...]] = [("rollout", "version", "state", "priority", "note")]
    table.extend(
        (item["id"], item["version"], item["state"], str(item["priority"]), item["note"] or "-")
        for item in listing
    )
    return "\n".join(_columns(table)) + "\n"


def render(view: Mapping[str, Any], *, devices: bool = False, fleet: bool = True) -> str:
    """The text view: the rollout's rings, then the fleet's states and versions."""
    lines: list[str] = []
    rollout = view.get("rollout")
    if rollout:
        lines.append(
            f"rollout {rollout['id']}: version {rollout['version']}, {rollout['state']}"
            f" (priority {rollout['priority']})" + (f" - {rollout['note']}" if rollout["note"] else "")
        )
        table: list[tuple[str, ...]] = [
            ("ring", "state", "devices", "ready", "updating", "failed", "waiting")
        ]
        for ring in rollout["rings"]:
            counts = ring["counts"]
            numbers = (
                ("-",) * 5
                if counts is None
                else tuple(str(counts[key]) for key in ("targeted", "ready", "updating", "failed", "waiting"))
            )
            table.append((ring["name"], ring["state"], *numbers))
        lines.extend(_columns(table))
        if not fleet:
            return "\n".join(lines) + "\n"
        lines.append("")
    lines.append(f"devices: {view['devices']}")
    lines.append("update states: " + (", ".join(f"{k} {v}" for k, v in view["states"].items()) or "-"))
    lines.append("update versions: " + (", ".join(f"{k} {v}" for k, v in view["versions"].items()) or "-"))
    if view["serving"]:
        lines.append("serving: " + ", ".join(f"{k} {v}" for k, v in view["serving"].items()))
    if devices:
        lines.append("")
        rows: list[tuple[str, ...]] = [("device", "state", "version", "serving", "error", "rings")]
        for row in view["deviceList"]:
            rows.append(
                (
                    row["device_id"],
                    row["state"],
                    row["version"] or "-",
                    row["serving"] or "-",
                    row["error"] or "-",
                    ",".join(row["rings"]) or "-",
                )
            )
        lines.extend(_columns(rows))
    return "\n".join(lines) + "\n"


def _columns(table: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
