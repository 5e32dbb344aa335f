"""Configurations: validation, immutable content, etags, quota (pure: a store, no servers)."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgehub_sim.deployments.configurations import MAX_CONFIGURATIONS, Configurations
from edgehub_sim.deployments.throttle import WriteThrottle
from edgehub_sim.errors import HubRequestError
from edgehub_sim.store import Store


def layered(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "content": {
            "modulesContent": {
                "$edgeAgent": {},
                "loader": {"properties.desired.model": {"FileName": "m.zip", "version": "2"}},
            }
        },
        "targetCondition": "tags.ring='canary'",
        "priority": 10,
        "labels": {"rollout": "r1"},
        "metrics": {"queries": {"ready": "SELECT deviceId FROM devices.modules WHERE moduleId='loader'"}},
    }
    body.update(overrides)
    return json.dumps(body).encode()


@pytest.fixture
def configurations(tmp_path: Path) -> Iterator[Configurations]:
    store = Store(tmp_path / "s.db")
    yield Configurations(store)
    store.close()


def refused(action: Any) -> HubRequestError:
    with pytest.raises(HubRequestError) as caught:
        action()
    return caught.value


def test_create_then_update_only_the_mutable_fields_with_the_etag(configurations: Configurations) -> None:
    created, is_new = configurations.put("r1-canary", layered(), None)
    assert is_new and created["etag"] and created["createdTimeUtc"] == created["lastUpdatedTimeUtc"]
    assert created["systemMetrics"]["results"] == {"targetedCount": 0, "appliedCount": 0}
    changed = layered(targetCondition="tags.ring='early'", priority=20, labels={"rollout": "r1", "x": "y"})
    updated, is_new = configurations.put("r1-canary", changed, created["etag"])
    assert not is_new and updated["etag"] != created["etag"]
    assert (updated["targetCondition"], updated["priority"], updated["labels"]["x"]) == (
        "tags.ring='early'",
        20,
        "y",
    )
    assert updated["createdTimeUtc"] == created["createdTimeUtc"]
    assert configurations.put("r1-canary", layered(priority=30), "*")[0]["priority"] == 30
    assert [c["id"] for c in configurations.listing()] == ["r1-canary"]


def test_an_existing_id_without_if_match_is_a_conflict(configurations: Configurations) -> None:
    configurations.put("dup", layered(), None)
    error = refused(lambda: configurations.put("dup", layered(), None))
    assert (error.status, error.code) == (409, "ConfigurationAlreadyExists")


def test_a_stale_etag_is_refused_with_412(configurations: Configurations) -> None:
    first, _ = configurations.put("c", layered(), None)
    configurations.put("c", layered(priority=11), first["etag"])
    error = refused(lambda: configurations.put("c", layered(priority=12), first["etag"]))
    assert (error.status, error.code) == (412, "PreconditionFailed")
    error = refused(lambda: configurations.delete("c", f'"{first["etag"]}"'))
    assert error.status == 412
    assert configurations.get("c")["priority"] == 11


def test_content_is_immutable(configurations: Configurations) -> None:
    configurations.put("c", layered(), None)
    other = {"modulesContent": {"$edgeAgent": {}, "loader": {"properties.desired.model": {"version": "3"}}}}
    error = refused(lambda: configurations.put("c", layered(content=other), "*"))
    assert (error.status, error.code) == (400, "ConfigurationContentUpdateNotAllowed")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (layered(targetCondition="tags.ring IN ['a']"), "InvalidConfigurationTargetCondition"),
        (layered(targetCondition="tags.ring = "), "InvalidConfigurationTargetCondition"),
        (
            layered(content={"modulesContent": {"loader": {"properties.desired.x": 1}}}),
            "InvalidConfigurationContent",
        ),
        (
            layered(content={"modulesContent": {"$edgeAgent": {"properties.desired": {"modules": {}}}}}),
            "InvalidConfigurationContent",
        ),
        (layered(content={"deviceContent": {"properties.desired.x": 1}}), "InvalidConfigurationContent"),
        (
            layered(content={"modulesContent": {"$edgeAgent": {}, "loader": {"tags.x": 1}}}),
            "InvalidConfigurationContent",
        ),
        (layered(metrics={"queries": {"bad": "SELECT nothing"}}), "InvalidConfigurationCustomMetricsQuery"),
        (layered(priority=-1), "ArgumentInvalid"),
        (layered(priority="high"), "ArgumentInvalid"),
        (layered(id="another-id"), "ArgumentInvalid"),
        (b"{not json", "ArgumentInvalid"),
    ],
)
def test_bad_configurations_are_refused_with_400(
    configurations: Configurations, body: bytes, code: str
) -> None:
    error = refused(lambda: configurations.put("c", body, None))
    assert (error.status, error.code) == (400, code)
    assert configurations.listing() == []


def test_ids_follow_iot_hubs_rule(configurations: Configurations) -> None:
    assert refused(lambda: configurations.put("Upper", layered(), None)).status == 400
    assert refused(lambda: configurations.put("x" * 129, layered(), None)).status == 400


def test_a_hub_holds_at_most_100_configurations(configurations: Configurations) -> None:
    for index in range(MAX_CONFIGURATIONS):
        configurations.put(f"c{index}", layered(), None)
    error = refused(lambda: configurations.put("one-more", layered(), None))
    assert (error.status, error.code) == (403, "IotHubQuotaExceeded")
    assert len(configurations.listing(100)) == MAX_CONFIGURATIONS
    assert [c["id"] for c in configurations.listing(2)] == ["c0", "c1"]
    configurations.delete("c0", None)
    configurations.put("one-more", layered(), None)  # room again after a delete


def test_unknown_configurations_are_404(configurations: Configurations) -> None:
    assert refused(lambda: configurations.get("ghost")).code == "ConfigurationNotFound"
    assert refused(lambda: configurations.delete("ghost", "*")).status == 404
    assert refused(lambda: configurations.listing(0)).status == 400


def test_configurations_survive_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    Configurations(store).put("kept", layered(), None)
    store.close()
    reopened = Store(tmp_path / "s.db")
    assert Configurations(reopened).get("kept")["priority"] == 10
    reopened.close()


def test_the_write_throttle_answers_429_with_retry_after_until_the_window_moves() -> None:
    now = [1000.0]
    throttle = WriteThrottle(2, clock=lambda: now[0])
    throttle.admit()
    now[0] += 10
    throttle.admit()
    now[0] += 5
    error = refused(throttle.admit)
    assert (error.status, error.code, error.retry_after) == (429, "ThrottlingException", 45)
    now[0] += 44.5
    assert refused(throttle.admit).retry_after == 1  # never less than a second
    now[0] += 0.5  # the first write leaves the window
    throttle.admit()
    assert refused(throttle.admit).status == 429
    with pytest.raises(ValueError, match="at least 1"):
        WriteThrottle(0)


def test_without_a_limit_nothing_is_throttled() -> None:
    throttle = WriteThrottle(None, clock=lambda: 0.0)
    for _ in range(1000):
        throttle.admit()
