"""Twin state: JSON merge patches, versions, persistence in the store."""

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from edge_shared.merge_patch import merge_patch
from edgehub_sim.errors import TwinPatchError, UnknownModule
from edgehub_sim.store import Store
from edgehub_sim.twins import TwinRegistry
from tests.edgehub_sim.conftest import start_simulator


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


def test_twins_of_a_state_dir_from_before_fleets_are_kept(manifest_path: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with closing(sqlite3.connect(state / "state.db")) as old, old:
        old.execute(
            "CREATE TABLE twins (module TEXT PRIMARY KEY, desired TEXT NOT NULL, "
            "desired_version INTEGER NOT NULL, reported TEXT NOT NULL, reported_version INTEGER NOT NULL)"
        )
        old.execute("INSERT INTO twins VALUES ('sender', '{\"level\": 5}', 4, '{\"state\": \"ready\"}', 7)")
    simulator = start_simulator(manifest_path, state)
    try:
        twin = simulator.twin("sender")["properties"]
        assert twin["desired"] == {"level": 5, "$version": 4}
        assert twin["reported"] == {"state": "ready", "$version": 7}
        assert simulator.twin("receiver")["properties"]["desired"] == {"$version": 1}  # from the manifest
    finally:
        simulator.stop()
    with closing(sqlite3.connect(state / "state.db")) as migrated:
        tables = {row[0] for row in migrated.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "twins" not in tables and "module_twins" in tables
