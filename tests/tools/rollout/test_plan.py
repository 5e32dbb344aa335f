"""The rollout plan: ring parsing, condition checks, failure limits, promotion thresholds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge_tools.rollout.plan import FailureLimit, PlanError, Ring, RolloutPlan, condition_problem


def test_a_ring_is_a_name_and_a_condition() -> None:
    ring = Ring.parse("canary:tags.ring='canary' AND tags.site='north:1'")
    assert ring.name == "canary"
    assert ring.condition == "tags.ring='canary' AND tags.site='north:1'"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("canary", "expected NAME:CONDITION"),
        (":tags.a='b'", "expected NAME:CONDITION"),
        ("Canary:tags.a='b'", "lowercase"),
        ("can ary:tags.a='b'", "lowercase"),
        ("canary:", "empty"),
        ("canary:   ", "empty"),
        ("canary:tags.a='b", "unclosed quote"),
        ("canary:(tags.a='b'", "'(' without"),
        ("canary:tags.a='b')", "')' without"),
        ("canary:tags.site IN ['a', 'b']", "IN [...]"),
        ("canary:tags.site in['a']", "IN [...]"),
    ],
)
def test_bad_rings_are_refused_with_the_reason(text: str, expected: str) -> None:
    with pytest.raises(PlanError, match=expected.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        Ring.parse(text)


def test_in_inside_a_quoted_value_is_not_the_in_operator() -> None:
    assert condition_problem("tags.note='IN [x]' AND (deviceId='d1')") is None


@pytest.mark.parametrize(
    ("values", "failed", "targeted", "exceeded"),
    [
        (["0"], 0, 10, False),
        (["0"], 1, 10, True),
        (["2"], 2, 10, False),
        (["2"], 3, 10, True),
        (["10%"], 1, 10, False),
        (["10%"], 2, 10, True),
        (["10%"], 1, 5, True),
        (["5", "50%"], 3, 4, True),  # the percentage trips first
        (["1", "50%"], 2, 100, True),  # the count trips first
        ([], 100, 100, False),
    ],
)
def test_the_failure_limit_trips_past_either_bound(
    values: list[str], failed: int, targeted: int, exceeded: bool
) -> None:
    assert FailureLimit.parse(values).exceeded(failed, targeted) is exceeded


@pytest.mark.parametrize("value", ["-1", "x", "101%", "-5%", "nan%", "1.5"])
def test_bad_failure_limits_are_refused(value: str) -> None:
    with pytest.raises(PlanError, match="--max-failed"):
        FailureLimit.parse([value])


def _plan(*names: str, promote: float = 100.0) -> RolloutPlan:
    rings = tuple(Ring(name=name, condition=f"tags.ring='{name}'") for name in names)
    return RolloutPlan(rollout_id="r1", version="v2", rings=rings, promote_percent=promote, priority=10)


def test_duplicate_ring_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="duplicate ring name"):
        _plan("canary", "all", "canary")


def test_a_plan_needs_a_ring() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        _plan()


@pytest.mark.parametrize(
    ("promote", "targeted", "needed"),
    [(100.0, 10, 10), (90.0, 10, 9), (50.0, 3, 2), (1.0, 3, 1), (100.0, 0, 0), (10.0, 1, 1)],
)
def test_promotion_needs_the_share_rounded_up(promote: float, targeted: int, needed: int) -> None:
    assert _plan("all", promote=promote).ready_needed(targeted) == needed
