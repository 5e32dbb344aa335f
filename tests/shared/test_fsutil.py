"""Atomic writes: the file appears whole or not at all, private unless a mode is asked for."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edge_shared.fsutil import atomic_write_bytes


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_mode_is_set_for_shared_artefacts(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    atomic_write_bytes(target, b"weights", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
