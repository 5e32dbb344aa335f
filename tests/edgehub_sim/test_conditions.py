"""Target conditions and twin queries over twin documents (pure: no servers)."""

from typing import Any

import pytest

from edgehub_sim.deployments.conditions import parse_target_condition
from edgehub_sim.deployments.query import parse_query
from edgehub_sim.errors import HubRequestError


def device(device_id: str, ring: str | None = None, **reported: Any) -> dict[str, Any]:
    tags = {} if ring is None else {"ring": ring, "site": {"floor": 3}}
    return {
        "deviceId": device_id,
        "tags": tags,
        "capabilities": {"iotEdge": True},
        "properties": {"desired": {"$version": 1}, "reported": {**reported, "$version": 1}},
    }


FLEET = [
    device("d1", "canary", temp=20),
    device("d2", "early", temp=30),
    device("d3", "canary", temp=40),
    device("d4"),
]


def targeted(condition: str) -> list[str]:
    parsed = parse_target_condition(condition)
    return [twin["deviceId"] for twin in FLEET if parsed.matches(twin)]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("tags.ring='canary'", ["d1", "d3"]),
        ('tags.ring = "early"', ["d2"]),
        ("deviceId='d4'", ["d4"]),
        ("tags.site.floor = 3", ["d1", "d2", "d3"]),
        ("tags.ring='canary' AND properties.reported.temp > 25", ["d3"]),
        ("tags.ring='early' OR deviceId='d1'", ["d1", "d2"]),
        ("NOT (tags.ring='canary')", ["d2"]),  # undefined stays undefined under NOT: d4 is not targeted
        ("(tags.ring='canary' OR tags.ring='early') AND NOT deviceId='d2'", ["d1", "d3"]),
        ("properties.reported.temp >= 30 and properties.reported.temp < 40", ["d2"]),
        ("properties.reported.temp <= 20", ["d1"]),
        ("tags.ring != 'canary'", ["d2"]),
        ("tags.ring <> 'canary'", ["d2"]),
        ("capabilities.iotEdge = true", ["d1", "d2", "d3", "d4"]),
        ("IS_DEFINED(tags.ring)", ["d1", "d2", "d3"]),
        ("tags.ring = 3", []),  # a string never equals a number
        ("tags.missing = 'x'", []),
    ],
)
def test_target_conditions_select_devices(condition: str, expected: list[str]) -> None:
    assert targeted(condition) == expected


@pytest.mark.parametrize("condition", ["", "   "])
def test_an_empty_condition_targets_nothing(condition: str) -> None:
    assert targeted(condition) == []


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ("tags.ring IN ['canary', 'early']", "IN"),
        ("tags.ring = 'canary' AND", "end of condition"),
        ("(tags.ring = 'canary'", "to close"),
        ("tags.ring == 'canary'", "unexpected"),
        ("tag.ring = 'canary'", "not a twin property"),
        ("properties.tags.x = 1", "properties.desired"),
        ("$body.x = 1", "system properties"),
        ("tags.ring = 'unterminated", "unterminated"),
        ("tags.ring || 'x'", "not supported"),
        ("tags['ring'] = 'x'", "indexing"),
        ("STARTS_WITH(tags.ring, 'c')", "STARTS_WITH"),
    ],
)
def test_unsupported_or_malformed_conditions_get_the_hubs_error(condition: str, reason: str) -> None:
    with pytest.raises(HubRequestError) as refused:
        parse_target_condition(condition)
    assert (refused.value.status, refused.value.code) == (400, "InvalidConfigurationTargetCondition")
    assert reason in str(refused.value)


MODULES = [
    {"deviceId": "d1", "moduleId": "loader", "properties": {"reported": {"ModelUpdate": {"state": "ready"}}}},
    {"deviceId": "d1", "moduleId": "inference", "properties": {"reported": {}}},
    {
        "deviceId": "d2",
        "moduleId": "loader",
        "properties": {"reported": {"ModelUpdate": {"state": "failed"}}},
    },
]


def test_module_queries_select_and_project() -> None:
    query = parse_query(
        "SELECT deviceId FROM devices.modules "
        "WHERE moduleId='loader' AND properties.reported.ModelUpdate.state='ready'"
    )
    assert query.collection == "devices.modules"
    assert query.run(MODULES) == [{"deviceId": "d1"}]
    both = parse_query(
        "select deviceId, moduleId, properties.reported.ModelUpdate.state from devices.modules"
    )
    assert both.run(MODULES)[2] == {"deviceId": "d2", "moduleId": "loader", "state": "failed"}


def test_device_queries_return_whole_twins() -> None:
    query = parse_query("SELECT * FROM devices WHERE tags.ring = 'canary'")
    assert [twin["deviceId"] for twin in query.run(FLEET)] == ["d1", "d3"]
    assert parse_query("SELECT * FROM devices").run(FLEET) == FLEET


@pytest.mark.parametrize(
    "query",
    [
        "SELECT COUNT() FROM devices",
        "SELECT * FROM devices.jobs",
        "SELECT * FROM devices WHERE tags.ring = 'a' GROUP BY tags.ring",
        "SELECT moduleId FROM devices",
        "DELETE FROM devices",
        "SELECT * FROM devices WHERE",
    ],
)
def test_queries_outside_the_subset_are_refused(query: str) -> None:
    with pytest.raises(HubRequestError) as refused:
        parse_query(query)
    assert refused.value.status == 400
