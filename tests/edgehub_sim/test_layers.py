"""The layered-deployment merge as pure functions, and module twins under layers (no servers)."""

from pathlib import Path

import pytest

from edgehub_sim.deployments.layers import Layer, diff, module_layers, overlay, split_path
from edgehub_sim.store import Store
from edgehub_sim.twins import TwinRegistry


def layer(config_id: str, priority: int, created: str, **properties: object) -> Layer:
    """A layer setting `properties.desired.<key>` on module `loader` (dots in keys written as __)."""
    content = {f"properties.desired.{k.replace('__', '.')}": v for k, v in properties.items()}
    return Layer(config_id, priority, created, {"$edgeAgent": {}, "loader": content})


def merged(base: dict[str, object], *layers: Layer) -> dict[str, object]:
    return overlay(base, module_layers(layers, "loader"))


def test_higher_priority_wins_for_the_same_path_and_other_paths_combine() -> None:
    low = layer("low", 10, "2026-01-01T00:00:00.000000Z", model={"v": 1}, level=1)
    high = layer("high", 20, "2025-01-01T00:00:00.000000Z", model={"v": 2})
    assert merged({}, high, low) == {"model": {"v": 2}, "level": 1}
    assert merged({}, low, high) == {"model": {"v": 2}, "level": 1}  # order of arrival does not matter


def test_on_equal_priority_the_newer_configuration_wins() -> None:
    older = layer("b-older", 10, "2026-01-01T00:00:00.000000Z", model={"v": 1})
    newer = layer("a-newer", 10, "2026-01-02T00:00:00.000000Z", model={"v": 2})
    assert merged({}, newer, older) == {"model": {"v": 2}}


def test_a_value_replaces_the_object_at_its_path_so_layers_never_mix_an_objects_keys() -> None:
    low = layer("low", 1, "t1", model={"FileName": "a.zip", "ContentMD5": "x"})
    high = layer("high", 2, "t2", model={"FileName": "b.zip"})
    assert merged({"model": {"FileName": "base.zip", "Extra": 1}}, low, high) == {
        "model": {"FileName": "b.zip"}
    }


def test_nested_paths_set_inside_objects_and_null_removes() -> None:
    base = {"settings": {"a": 1, "b": 2}, "gone": True}
    result = merged(base, layer("x", 1, "t", settings__b=3, settings__c__d=4, gone=None))
    assert result == {"settings": {"a": 1, "b": 3, "c": {"d": 4}}}
    assert base == {"settings": {"a": 1, "b": 2}, "gone": True}  # not mutated


def test_removing_the_top_layer_restores_the_lower_layers_value() -> None:
    low = layer("low", 1, "t1", model={"v": 1})
    high = layer("high", 2, "t2", model={"v": 2}, only_high=True)
    with_both = merged({"keep": 0}, low, high)
    without_high = merged({"keep": 0}, low)
    assert with_both == {"keep": 0, "model": {"v": 2}, "only_high": True}
    assert diff(with_both, without_high) == {"model": {"v": 1}, "only_high": None}


def test_diff_is_the_merge_patch_of_only_what_changed() -> None:
    old = {"a": 1, "b": {"c": 1, "d": 2}, "e": [1], "f": 1, "g": "same"}
    new = {"a": 1, "b": {"c": 1, "d": 3, "x": {}}, "e": [2], "f": True, "g": "same"}
    assert diff(old, new) == {"b": {"d": 3, "x": {}}, "e": [2], "f": True}
    assert diff(new, new) == {}


@pytest.mark.parametrize(
    "key",
    ["properties.desired", "properties.desired.", "properties.reported.x", "x", "properties.desired.a..b"],
)
def test_only_properties_desired_paths_are_layer_keys(key: str) -> None:
    with pytest.raises(ValueError, match="properties.desired"):
        split_path(key)


def test_module_twin_under_layers_keeps_direct_patches_as_its_base(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    twins = TwinRegistry(store, {"d/loader": {"model": {"v": 0}, "level": 1}})
    change = twins.set_layers("d/loader", module_layers([layer("l", 1, "t", model={"v": 5})], "loader"))
    assert change is not None and change.patch == {"model": {"v": 5}} and change.version == 2
    # A direct PATCH of a path the layer sets changes the base only: the module sees no change of it.
    hidden = twins.update_desired("d/loader", {"model": {"v": 9}, "level": 2})
    assert (hidden.version, hidden.patch) == (3, {"level": 2})
    assert twins.set_layers("d/loader", module_layers([layer("l", 1, "t", model={"v": 5})], "loader")) is None
    restored = twins.set_layers("d/loader", ())
    assert restored is not None and restored.patch == {"model": {"v": 9}}
    assert twins.get("d/loader").desired == {"model": {"v": 9}, "level": 2}
    store.close()
    reopened = TwinRegistry(Store(tmp_path / "s.db"), {})
    assert (reopened.get("d/loader").desired_version, reopened.get("d/loader").layers) == (4, ())
