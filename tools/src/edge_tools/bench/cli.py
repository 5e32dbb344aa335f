"""Run the benchmark sections in order, print one table, and write the Markdown report.

A section that fails is recorded as failed (with its error) and the others still run; the exit status
is then 1, so `make bench` fails loudly while the report keeps every figure that was measured.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from edge_tools.bench import coldstart, delta, download, fleet, serving, simulator, swap, update
from edge_tools.bench.machine import describe, load_average
from edge_tools.bench.profile import PROFILES, Mode, Profile
from edge_tools.bench.report import RunInfo, markdown, table
from edge_tools.bench.results import SectionResult
from edge_tools.fixtures import FixtureCatalog, ensure_fixtures

logger = logging.getLogger("edge_tools.bench")

SECTIONS = ("serving", "swap", "download", "update", "coldstart", "simulator", "delta", "fleet")
#: Run only when named (`--only fleet`, `make bench-fleet`): it starts dozens of processes for minutes.
ON_REQUEST = ("fleet",)
TITLES = {
    "serving": "Serving overhead",
    "swap": "Swap under load",
    "download": "Download",
    "update": "Update latency",
    "coldstart": "Cold start",
    "simulator": "Simulator",
    "delta": "Delta updates",
    "fleet": "Fleet rollout",
}

Runner = Callable[[FixtureCatalog, Profile, Path], SectionResult]


def default_runners() -> dict[str, Runner]:
    return {
        "serving": serving.run,
        "swap": swap.run,
        "download": lambda _catalog, profile, work: download.run(profile, work),
        "update": update.run,
        "coldstart": coldstart.run,
        "simulator": lambda _catalog, profile, _work: simulator.run(profile),
        "delta": lambda _catalog, profile, work: delta.run(profile, work),
        "fleet": fleet.run,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge_tools.bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes (make bench-quick)")
    size.add_argument("--smoke", action="store_true", help="the smallest sizes: checks the script works (CI)")
    parser.add_argument("--out", type=Path, help="write the Markdown report here (e.g. docs/benchmarks.md)")
    parser.add_argument("--fixtures", type=Path, default=Path("build/fixtures"), help="fixture folder")
    parser.add_argument(
        "--only", default="", help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})"
    )
    return parser


def _selected(only: str, profile: Profile) -> list[str]:
    if not only:
        return [name for name in SECTIONS if (name != "delta" or profile.delta) and name not in ON_REQUEST]
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown sections: {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    return names


def run_sections(
    names: Sequence[str],
    catalog: FixtureCatalog,
    profile: Profile,
    work: Path,
    runners: Mapping[str, Runner] | None = None,
) -> list[SectionResult]:
    """Run each named section in `work/<name>`; a section that raises is kept as a failed section."""
    runners = runners or default_runners()
    results = []
    for name in names:
        logger.info("section %s", name)
        started = time.monotonic()
        try:
            (work / name).mkdir(parents=True, exist_ok=True)
            result = runners[name](catalog, profile, work / name)
        except Exception as exc:
            logger.exception("section %s failed", name)
            result = SectionResult(
                key=name, title=TITLES[name], setup="", error=f"{type(exc).__name__}: {exc}"
            )
        logger.info("section %s took %.1f s", name, time.monotonic() - started)
        results.append(result)
    return results


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every section's context managers stop their children."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("azure", "httpx"):  # they log every HTTP request at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    mode: Mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    profile = PROFILES[mode]
    names = _selected(args.only, profile)
    command = shlex.join(["python", "-m", "edge_tools.bench", *(sys.argv[1:] if argv is None else argv)])
    started_at, started = datetime.now(UTC), time.monotonic()
    load_before = load_average()
    machine = describe()
    catalog = ensure_fixtures(args.fixtures)
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        work = Path(tmp)
        sections = run_sections(names, catalog, profile, work)
    info = RunInfo(
        command, mode, started_at, time.monotonic() - started, load_before, load_average(), machine
    )
    sys.stdout.write(table(sections))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(sections, info), encoding="utf-8")
        logger.info("wrote %s", args.out)
    return 1 if any(section.error for section in sections) else 0
