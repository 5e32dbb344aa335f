"""What a benchmark section returns: figures with min/median/max, and goals checked against them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Spread:
    """min / median / max over the repetitions of one figure."""

    low: float
    median: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a figure needs at least one measurement")
        return cls(min(values), statistics.median(values), max(values), len(values))

    def text(self, digits: int = 2) -> str:
        return f"{_fmt(self.low, digits)} / {_fmt(self.median, digits)} / {_fmt(self.high, digits)}"


def _fmt(value: float, digits: int) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured quantity: `name` with its unit, spread over `Spread.count` repetitions."""

    name: str
    unit: str
    spread: Spread
    digits: int = 2


@dataclass(frozen=True, slots=True)
class Goal:
    """A goal of issue 8 and whether this run met it; a shortfall carries its measured cause."""

    name: str
    target: str
    measured: str
    met: bool
    cause: str = ""


@dataclass(slots=True)
class SectionResult:
    """One numbered section of the report."""

    key: str
    title: str
    setup: str
    figures: list[Figure] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""

    def figure(self, name: str, unit: str, values: Sequence[float], digits: int = 2) -> Spread:
        """Record a figure and return its spread (for goals computed from it)."""
        spread = Spread.of(values)
        self.figures.append(Figure(name, unit, spread, digits))
        return spread

    def goal(self, name: str, target: str, measured: str, met: bool, cause: str = "") -> None:
        self.goals.append(Goal(name, target, measured, met, "" if met else cause))
