"""JSON merge patch as IoT Hub applies twin patches (RFC 7386)."""

from __future__ import annotations

from edge_shared.merge_patch import apply_patch, merge_patch


def test_null_deletes_objects_merge_and_scalars_replace() -> None:
    target = {"a": {"b": 1, "c": 2}, "d": [1], "e": "x"}
    patch = {"a": {"b": None, "z": {"y": None, "w": 1}}, "d": [2], "e": None}
    assert merge_patch(target, patch) == {"a": {"c": 2, "z": {"w": 1}}, "d": [2]}
    assert target == {"a": {"b": 1, "c": 2}, "d": [1], "e": "x"}, "merge_patch must not mutate its input"


def test_object_replaces_a_scalar() -> None:
    assert merge_patch({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}


def test_apply_patch_changes_the_dict_in_place() -> None:
    held = {"FileName": "a.zip", "Size": 1}
    alias = held
    apply_patch(held, {"Size": None, "Version": "2"})
    assert alias == {"FileName": "a.zip", "Version": "2"}
