"""Twin state: JSON merge patches, versions, persistence in the store."""

from pathlib import Path

import pytest

from edge_shared.merge_patch import merge_patch
from edgehub_sim.errors import TwinPatchError, UnknownModule
from edgehub_sim.store import Store
from edgehub_sim.twins import TwinRegistry


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "d": [1], "e": "x"}
    patch = {"a": {"b": None, "z": {"y": 1}}, "d": {"k": 1}, "e": None, "f": [2]}
    assert merge_patch(target, patch) == {"a": {"c": 2, "z": {"y": 1}}, "d": {"k": 1}, "f": [2]}
    assert target == {"a": {"b": 1, "c": 2}, "d": [1], "e": "x"}  # not mutated


def test_registry_versions_persist_and_strip_metadata(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    twins = TwinRegistry(store, {"m": {"x": 1, "$version": 99}})
    assert twins.patch_desired("m", {"y": 2, "$version": 5}) == 2
    assert twins.patch_reported("m", {"r": 1}) == 2
    with pytest.raises(TwinPatchError):
        twins.patch_reported("m", [1])
    with pytest.raises(UnknownModule):
        twins.get("ghost")
    store.close()
    reopened = TwinRegistry(Store(tmp_path / "s.db"), {"m": {"ignored": True}})
    twin = reopened.get("m")
    assert (twin.desired, twin.desired_version) == ({"x": 1, "y": 2}, 2)
    assert (twin.reported, twin.reported_version) == ({"r": 1}, 2)
