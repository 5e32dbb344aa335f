"""A rollout's plan: the model, its rings and the policy that promotes or halts them.

Validation here is the CLI's own, before anything reaches the hub: ring names and rollout ids become
configuration ids, so they keep to a safe subset of the hub's id alphabet; target conditions get a light
lexical check (quotes, parentheses, the `IN [...]` form the hub refuses) and the hub checks the rest.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

#: Configuration ids allow more, but these also stay readable in labels and on a command line.
RolloutId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
RING_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")
RingName = Annotated[str, StringConstraints(pattern=RING_NAME.pattern)]
#: Rings per rollout: each is one configuration, and a hub holds 100 in all.
MAX_RINGS = 8


class PlanError(ValueError):
    """A rollout plan the CLI refuses before calling the hub; the message says which part and why."""


class Ring(BaseModel):
    """One stage of a rollout: a name and the device-twin condition that selects its devices."""

    model_config = ConfigDict(frozen=True)

    name: RingName
    condition: str

    @classmethod
    def parse(cls, text: str) -> Ring:
        """`name:condition`, as `--ring canary:"tags.ring='canary'"` gives it."""
        name, sep, condition = text.partition(":")
        if not sep or not name.strip():
            raise PlanError(
                f"ring {text[:40]!r}: expected NAME:CONDITION, e.g. canary:\"tags.ring='canary'\""
            )
        problem = condition_problem(condition)
        if problem:
            raise PlanError(f"ring {name.strip()!r}: {problem}")
        if not RING_NAME.match(name.strip()):
            raise PlanError(
                f"ring {name.strip()[:30]!r}: a name is 1-24 lowercase letters, digits or '-', "
                "starting with a letter or digit"
            )
        return cls(name=name.strip(), condition=condition.strip())


def condition_problem(condition: str) -> str | None:
    """What is lexically wrong with a target condition, or None (the hub validates the grammar)."""
    text = condition.strip()
    if not text:
        return "the target condition is empty (an empty condition targets no device)"
    depth = 0
    in_quote = False
    outside: list[str] = []
    for char in text:
        if char == "'":
            in_quote = not in_quote
            outside.append(" ")
            continue
        if in_quote:
            continue
        outside.append(char)
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return "the target condition has a ')' without its '('"
    if in_quote:
        return "the target condition has an unclosed quote"
    if depth:
        return "the target condition has a '(' without its ')'"
    if re.search(r"\bIN\s*\[", "".join(outside), flags=re.IGNORECASE):
        return "IoT Hub refuses IN [...] in target conditions: write a = 'x' OR a = 'y'"
    return None


class FailureLimit(BaseModel):
    """When a ring halts: more failed devices than `count`, or than `percent` of the ring (either)."""

    model_config = ConfigDict(frozen=True)

    count: Annotated[int, Field(ge=0)] | None = None
    percent: Annotated[float, Field(ge=0, le=100)] | None = None

    def exceeded(self, failed: int, targeted: int) -> bool:
        if self.count is not None and failed > self.count:
            return True
        return self.percent is not None and targeted > 0 and failed * 100 > self.percent * targeted

    def describe(self) -> str:
        parts = []
        if self.count is not None:
            parts.append(f"more than {self.count} device{'s' if self.count != 1 else ''}")
        if self.percent is not None:
            parts.append(f"more than {self.percent:g}% of the ring")
        return " or ".join(parts) or "never"

    @classmethod
    def parse(cls, values: list[str]) -> FailureLimit:
        """`--max-failed 2` and/or `--max-failed 10%` (the last of each kind wins)."""
        count: int | None = None
        percent: float | None = None
        for value in values:
            text = value.strip()
            try:
                if text.endswith("%"):
                    percent = float(text[:-1])
                    if not 0 <= percent <= 100 or math.isnan(percent):
                        raise ValueError
                else:
                    count = int(text)
                    if count < 0:
                        raise ValueError
            except ValueError:
                raise PlanError(
                    f"--max-failed {text[:20]!r}: expected a count (2) or a percentage (10%)"
                ) from None
        return cls(count=count, percent=percent)


class RolloutPlan(BaseModel):
    """Everything a rollout needs besides the model's desired properties."""

    model_config = ConfigDict(frozen=True)

    rollout_id: RolloutId
    version: str
    module: str = "loader"
    rings: tuple[Ring, ...]
    #: Share of a ring's devices that must report `ready` for this version before the next ring starts.
    promote_percent: Annotated[float, Field(gt=0, le=100)] = 100.0
    failure_limit: FailureLimit = FailureLimit(count=0)
    priority: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _rings_are_distinct(self) -> Self:
        if not self.rings:
            raise ValueError("a rollout needs at least one --ring")
        if len(self.rings) > MAX_RINGS:
            raise ValueError(f"at most {MAX_RINGS} rings")
        names = [ring.name for ring in self.rings]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate ring name(s): {', '.join(duplicates)}")
        return self

    def ready_needed(self, targeted: int) -> int:
        """Devices of a ring that must be ready to promote it (at least one when the ring has any)."""
        return max(1, math.ceil(targeted * self.promote_percent / 100)) if targeted else 0
