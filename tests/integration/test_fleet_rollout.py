"""A rollout through rings on a simulated fleet of real loaders: done through a failing device, then
halted by a failing canary with every healthy device back on the model before, without a download.

The small version of `make bench-fleet` (the same code, 5 devices)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_tools.bench.fleet import FleetBenchOptions, report, run_fleet
from edge_tools.fixtures import FixtureCatalog

pytestmark = pytest.mark.integration


def test_rollout_goes_through_a_failing_device_and_halts_on_a_failing_canary(
    catalog: FixtureCatalog, tmp_path: Path
) -> None:
    result = run_fleet(catalog, FleetBenchOptions(devices=5, inference_on=1, timeout=240), tmp_path)

    assert result.baseline.state == "done"
    assert result.through.state == "done"
    assert [ring.name for ring in result.through.rings] == ["canary", "early", "all"]
    # Each device downloaded the new ZIP about once (the disk-full one not at all).
    assert result.through.served_bytes <= 5 * 1.05 * result.zip_bytes
    assert result.through.served_bytes >= 3 * result.zip_bytes

    assert result.halt.state == "halted"
    assert "ring canary" in result.halt.note and "1 of 2 devices failed" in result.halt.note
    # Falling back to the previous layer is a switch to a kept version: storage serves nothing.
    assert result.fell_back == result.canary - 1 == 1
    assert result.fallback_bytes < result.zip_bytes / 100

    section = report([result])
    assert section.goals and all(goal.met for goal in section.goals), section.goals
    assert any(figure.name == "5 devices, through: ring early (2 devices)" for figure in section.figures)
