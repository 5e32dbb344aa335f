"""The throughput benchmark runs end to end on a tiny workload."""

import pytest

from edge_tools.bench.simulator_rates import main
from tests.edgehub_sim.conftest import random_loopback

pytestmark = pytest.mark.integration


def test_bench_reports_both_paths(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--clients", "2", "--messages", "5", "--repeat", "1", "--bind", random_loopback()]) == 0
    out = capsys.readouterr().out
    assert "| upstream |" in out
    assert "| routed |" in out
