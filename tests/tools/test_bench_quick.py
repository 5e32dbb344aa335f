"""`python -m edge_tools.bench`: the smoke run works end to end and writes a well-formed report.

Only the shape is checked, never the figures: goals are ratios judged by `make bench`, not by timed tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_tools.bench.cli import ON_REQUEST, SECTIONS, TITLES, main, run_sections
from edge_tools.bench.inference_process import free_port
from edge_tools.bench.machine import describe
from edge_tools.bench.profile import PROFILES
from edge_tools.bench.report import TABLE_HEADER, RunInfo, markdown, table
from edge_tools.bench.results import SectionResult, Spread
from edge_tools.bench.serving import BareServer, run_block
from edge_tools.bench.swap import Tally, _client, build_cpu_ms
from edge_tools.fixtures import FixtureCatalog, ensure_fixtures

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT = 240


@pytest.fixture(scope="module")
def fixtures_root() -> Path:
    root = REPO_ROOT / "build" / "fixtures"
    ensure_fixtures(root)
    return root


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with `header_start` (header included)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def _assert_well_formed(rows: list[list[str]]) -> None:
    assert len(rows) > 2, "a table with no rows"
    width = len(rows[0])
    assert all(len(row) == width for row in rows), [row for row in rows if len(row) != width]
    assert set(rows[1]) == {"---"}


@pytest.mark.integration
def test_smoke_run_prints_one_table_and_writes_the_report(tmp_path: Path, fixtures_root: Path) -> None:
    out = tmp_path / "benchmarks.md"
    command = [sys.executable, "-m", "edge_tools.bench", "--smoke", "--fixtures", str(fixtures_root)]
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=SMOKE_TIMEOUT, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-4000:]

    printed = _table_rows(done.stdout, TABLE_HEADER)
    _assert_well_formed(printed)
    sections_printed = {row[0] for row in printed[2:]}
    # The smoke profile skips delta; the fleet section runs only when named.
    expected = [TITLES[name] for name in SECTIONS if name != "delta" and name not in ON_REQUEST]
    assert sections_printed == {f"{n}. {title}" for n, title in enumerate(expected, 1)}
    assert all(re.fullmatch(r"\S+ / \S+ / \S+ \(\d+\)", row[2]) for row in printed[2:] if row[4] == "")
    assert {row[4] for row in printed[2:]} <= {"", "met", "NOT met"}

    report = out.read_text(encoding="utf-8")
    assert report.startswith("# Benchmarks\n")
    assert "## Machine" in report and "load average" in report and "--smoke" in report
    for number, title in enumerate(expected, 1):
        assert f"\n## {number}. {title}\n" in report
    goals = _table_rows(report, "| section | goal |")
    _assert_well_formed(goals)
    assert {row[4] for row in goals[2:]} <= {"met", "**not met**"}
    figures = report.count("| figure | min | median | max | unit | n |")
    assert figures == len(expected)
    for start in [m.start() for m in re.finditer(r"^\| figure \| min", report, re.MULTILINE)]:
        _assert_well_formed(_table_rows(report[start:], "| figure |"))


def _failing(*_: object) -> SectionResult:
    raise RuntimeError("boom")


def _working(_catalog: FixtureCatalog, _profile: object, work: Path) -> SectionResult:
    assert work.is_dir()
    section = SectionResult(key="simulator", title="Simulator", setup="set-up text")
    section.figure("rate", "msg/s", [1.0, 3.0, 2.0], 0)
    section.goal("rate", "≥ 1", "2", met=False, cause="the measured cause")
    return section


def test_a_failing_section_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    catalog = FixtureCatalog(schema_version=1, fingerprint="", models=[], images=[], files={}, real=False)
    results = run_sections(
        ["serving", "simulator"],
        catalog,
        PROFILES["smoke"],
        tmp_path,
        runners={"serving": _failing, "simulator": _working},
    )
    assert [r.error for r in results] == ["RuntimeError: boom", ""]
    printed = table(results)
    assert "| 1. Serving overhead | failed to run | RuntimeError: boom |" in printed
    assert "| 2. Simulator | rate | 1 / 2 / 3 (3) | msg/s | |" in printed
    assert "| 2. Simulator | goal: rate | 2 | ≥ 1 | NOT met |" in printed
    now = datetime.now(UTC)
    report = markdown(
        results, RunInfo("python -m edge_tools.bench", "smoke", now, 1.0, (1, 1, 1), (2, 2, 2), describe())
    )
    assert "- **2. Simulator, rate** (2, goal ≥ 1): the measured cause." in report
    assert "- **1. Serving overhead** did not run to the end: RuntimeError: boom" in report
    assert "**Failed:** RuntimeError: boom" in report


def test_unknown_sections_are_refused_before_anything_runs() -> None:
    with pytest.raises(SystemExit, match="unknown sections: nope"):
        main(["--smoke", "--only", "serving,nope"])


def test_a_figure_needs_a_measurement() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Spread.of([])
    assert Spread.of([3.0, 1.0, 2.0]).text(1) == "1.0 / 2.0 / 3.0"


def test_a_failed_request_in_a_block_fails_the_block() -> None:
    def broken(_: bytes) -> float:
        raise OSError("connection refused")

    with pytest.raises(RuntimeError, match="a benchmark request failed: connection refused"):
        run_block([lambda _: 0.001, broken], b"image", 4)
    block = run_block([lambda _: 0.002] * 2, b"image", 6)
    assert len(block.latencies) == 6 and block.p50 == 0.002 and block.rate > 0


def test_swap_clients_count_failures_instead_of_stopping() -> None:
    tally = Tally()
    port = free_port()  # nothing listens there
    _client(port, b"image", threading.Event(), tally, 3)
    assert tally.latencies == [] and len(tally.failures) == 3
    assert all(f.startswith("ConnectionRefusedError") for f in tally.failures)


def test_swap_build_cpu_is_read_from_the_reload_builds_the_server_logged_this_round(tmp_path: Path) -> None:
    log = tmp_path / "swap-server.log"
    earlier = '{"msg": "model loaded and warmed", "swap_source": "reload", "build_cpu_ms": 99.0}\n'
    log.write_text(earlier)
    offset = log.stat().st_size
    with log.open("a") as sink:
        sink.write("INFO:     Uvicorn running on http://127.0.0.1:1234\n")
        sink.write('{"msg": "model loaded and warmed", "swap_source": "startup", "build_cpu_ms": 30.0}\n')
        sink.write('{"msg": "model loaded and warmed", "swap_source": "reload", "build_cpu_ms": 9.5}\n')
        sink.write('{"msg": "model swapped in", "swap_source": "reload"}\n')
        sink.write('{"msg": "model loaded and warmed", "swap_source": "reload", "build_cpu_ms": 11}\n')
    assert build_cpu_ms(log, offset) == [9.5, 11.0]


@pytest.mark.integration
def test_a_server_that_exits_before_ready_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    with pytest.raises(
        RuntimeError, match=r"the bare FastAPI server exited with code 1 before /health/ready"
    ):
        BareServer(missing, tmp_path / "labels.txt", "onnx", tmp_path / "bare.log")
    assert "missing.onnx" in (tmp_path / "bare.log").read_text()
