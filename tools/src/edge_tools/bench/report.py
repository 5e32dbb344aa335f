"""One printed table of every figure and goal, and `docs/benchmarks.md` written from the same results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from edge_tools.bench.machine import Machine
from edge_tools.bench.results import SectionResult

TABLE_HEADER = "| section | figure or goal | min / median / max (n) | unit or target | met |"


@dataclass(frozen=True, slots=True)
class RunInfo:
    command: str
    mode: str
    started: datetime
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    machine: Machine


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(sections: Sequence[SectionResult]) -> str:
    """The printed table: a row per figure, then a row per goal, section by section."""
    lines = [TABLE_HEADER, "|---|---|---|---|---|"]
    for number, section in enumerate(sections, 1):
        label = f"{number}. {section.title}"
        if section.error:
            lines.append(f"| {label} | failed to run | {_cell(section.error)} | | |")
        for figure in section.figures:
            values = f"{figure.spread.text(figure.digits)} ({figure.spread.count})"
            lines.append(f"| {label} | {_cell(figure.name)} | {values} | {figure.unit} | |")
        for goal in section.goals:
            verdict = "met" if goal.met else "NOT met"
            lines.append(
                f"| {label} | goal: {_cell(goal.name)} | {_cell(goal.measured)} | {goal.target} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def markdown(sections: Sequence[SectionResult], run: RunInfo) -> str:
    m = run.machine
    openblas = (
        ", ".join(f"`{k}={v}`" for k, v in m.openblas_env.items())
        if m.openblas_env
        else "neither `OPENBLAS_CORETYPE` nor `OPENBLAS_L2_SIZE` set for the benchmark process"
    )
    fleet_only = [section.key for section in sections] == ["fleet"]
    regenerate = "`make bench-fleet`" if fleet_only else "`make bench` (full) or `make bench-quick`"
    out = [
        "# Fleet benchmarks" if fleet_only else "# Benchmarks",
        "",
        f"Written by `{run.command}` ({run.mode} mode) on {run.started:%Y-%m-%d %H:%M} UTC in "
        f"{run.seconds / 60:.1f} min; regenerate with {regenerate}. Do not edit "
        "by hand: the figures come from one run. How figures are taken ([architecture §12](architecture.md)):"
        " every goal is a ratio of two things measured side by side in this run on this machine (absolute "
        "times on a shared machine mean little across runs); each figure is min / median / max over its "
        "repetitions (n); "
        "goals are judged on the median unless the row says otherwise. Goals are checked here, never "
        "asserted in timed tests.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {_cell(m.cpu)} |",
        f"| cores | {m.cores} (shared with other engineers' test runs) |",
        f"| memory | {m.memory_gib:.1f} GiB |",
        f"| system | {m.system} |",
        f"| Python | {m.python} |",
        f"| packages | {', '.join(f'{k} {v}' for k, v in m.packages.items())} |",
        f"| BLAS | {_cell(m.blas)}; {openblas} |",
        f"| load average (1 / 5 / 15 min) | {_load(run.load_before)} at the start, "
        f"{_load(run.load_after)} at the end |",
        "",
        "`make bench` runs the benchmark under `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` (the "
        "environment notes: on processors where those are set for old OpenBLAS builds they slow a current "
        "numpy; tests and CI keep them). The BLAS row shows the kernel numpy then runs (threadpoolctl).",
        "",
        "## Goals",
        "",
        "| section | goal | target | measured | met |",
        "|---|---|---|---|---|",
    ]
    for number, section in enumerate(sections, 1):
        for goal in section.goals:
            verdict = "met" if goal.met else "**not met**"
            out.append(
                f"| {number}. {section.title} | {_cell(goal.name)} | {goal.target} | "
                f"{_cell(goal.measured)} | {verdict} |"
            )
    shortfalls = [(n, s, g) for n, s in enumerate(sections, 1) for g in s.goals if not g.met]
    failed = [(n, s) for n, s in enumerate(sections, 1) if s.error]
    out += ["", "## Shortfalls and their measured causes", ""]
    if not shortfalls and not failed:
        out.append("None: every goal above was met in this run.")
    for number, section, goal in shortfalls:
        out.append(
            f"- **{number}. {section.title}, {goal.name}** ({goal.measured}, goal {goal.target}): "
            f"{goal.cause}."
        )
    for number, section in failed:
        out.append(f"- **{number}. {section.title}** did not run to the end: {section.error}")
    for number, section in enumerate(sections, 1):
        out += ["", f"## {number}. {section.title}", "", section.setup, ""]
        if section.error:
            out += [f"**Failed:** {section.error}", ""]
        if section.figures:
            out += ["| figure | min | median | max | unit | n |", "|---|---|---|---|---|---|"]
            for figure in section.figures:
                low, median, high = figure.spread.text(figure.digits).split(" / ")
                out.append(
                    f"| {_cell(figure.name)} | {low} | {median} | {high} | {figure.unit} "
                    f"| {figure.spread.count} |"
                )
        if section.notes:
            out.append("")
            out += [f"- {_cell(note)}" for note in section.notes]
    return "\n".join(out) + "\n"
