"""`edge-model fleet`'s view, built from query results alone."""

from __future__ import annotations

from typing import Any

from edge_tools.rollout.configurations import Label, RingState, read_rollouts, ring_configuration
from edge_tools.rollout.decide import RingCounts
from edge_tools.rollout.fleet import device_rows, render, render_rollouts, summary
from edge_tools.rollout.plan import Ring, RolloutPlan


def _loader(device: str, update: Any) -> dict[str, Any]:
    return {"deviceId": device, "moduleId": "loader", "properties": {"reported": {"ModelUpdate": update}}}


def _inference(device: str, version: str) -> dict[str, Any]:
    return {"deviceId": device, "properties": {"reported": {"ActiveModel": {"version": version}}}}


LOADERS = [
    _loader("d2", {"state": "failed", "version": "v2", "error": {"code": "disk_full", "message": "full"}}),
    _loader("d1", {"state": "ready", "version": "v2"}),
    _loader("d3", {"state": "ready", "version": "v1"}),
    {"deviceId": "d4", "properties": {"reported": {}}},
    {"deviceId": "d5", "properties": "garbage"},
]


def test_rows_join_loader_inference_and_rings_and_survive_odd_twins() -> None:
    rows = device_rows(LOADERS, [_inference("d1", "v2"), _inference("d3", "v1")], {"canary": {"d1", "d2"}})
    assert [(r.device_id, r.state, r.version, r.serving, r.error, r.rings) for r in rows] == [
        ("d1", "ready", "v2", "v2", None, ("canary",)),
        ("d2", "failed", "v2", None, "disk_full", ("canary",)),
        ("d3", "ready", "v1", "v1", None, ()),
        ("d4", "unknown", None, None, None, ()),
        ("d5", "unknown", None, None, None, ()),
    ]


def _record() -> Any:
    plan = RolloutPlan(
        rollout_id="r1",
        version="v2",
        rings=(
            Ring(name="canary", condition="tags.ring='canary'"),
            Ring(name="all", condition="tags.env='prod'"),
        ),
        priority=11,
    )
    documents = [ring_configuration(plan, index, {"FileName": "m.zip"}) for index in (0, 1)]
    documents[0]["labels"][Label.STATE.value] = RingState.ACTIVE.value
    return read_rollouts(documents)["r1"]


def test_summary_and_text_show_rings_states_versions_and_serving() -> None:
    rows = device_rows(LOADERS, [_inference("d1", "v2"), _inference("d3", "v1")], {"canary": {"d1", "d2"}})
    view = summary(rows, _record(), {0: RingCounts(targeted=2, ready=1, failed=1)})
    assert view["devices"] == 5
    assert view["states"] == {"failed": 1, "ready": 2, "unknown": 2}
    assert view["versions"] == {"-": 2, "v1": 1, "v2": 2}
    assert view["serving"] == {"v1": 1, "v2": 1}
    assert view["rollout"]["rings"][0]["counts"] == {
        "targeted": 2,
        "ready": 1,
        "failed": 1,
        "updating": 0,
        "waiting": 0,
    }
    assert view["rollout"]["rings"][1]["counts"] is None
    text = render(view, devices=True)
    assert "rollout r1: version v2, running (priority 11)" in text
    lines = text.splitlines()
    assert lines[2].split() == ["canary", "active", "2", "1", "0", "1", "0"]
    assert lines[3].split() == ["all", "pending", "-", "-", "-", "-", "-"]
    assert "update states: failed 1, ready 2, unknown 2" in text
    assert any(line.split() == ["d2", "failed", "v2", "-", "disk_full", "canary"] for line in lines)
    assert "DownloadUrl" not in text


def test_listing_rollouts() -> None:
    assert render_rollouts([]) == "no rollouts on this hub\n"
    text = render_rollouts(
        [{"id": "r1", "version": "v2", "state": "halted", "priority": 11, "note": "ring x"}]
    )
    assert text.splitlines()[1].split() == ["r1", "v2", "halted", "11", "ring", "x"]
