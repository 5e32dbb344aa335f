"""What the loader does when the inference module refuses a version: pure decisions, no I/O.

The inference module tells the loader through its routed `InferenceStatus` output which version serves
and which it refused. A refused version that `current` names is replaced by the last version known to
serve; a refused desired target is not installed again until the desired properties change. A version
can serve and later be refused (it failed request after request), so the loader remembers a few served
versions, not only the last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from edge_shared.messages import InferenceStatus

#: Served versions remembered: the one serving, the one before it, and two more in case those go.
SERVED_HISTORY = 4


class Rejection(BaseModel):
    """A version the inference module refused, persisted so that a restart neither retries nor forgets it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: The desired target (see `state.target_key`) it was installed for; None when it was not the desired one.
    target: str | None
    version: str
    file_name: str | None
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class RejectionPlan:
    """What to do about one refusal."""

    #: The version to make current again, or None to leave `current` alone.
    restore: str | None
    #: The desired target to stop installing until the desired properties change, or None.
    block_target: str | None
    #: False when the refusal concerns neither `current` nor the desired target (an old, stale word).
    relevant: bool


def plan_rejection(
    status: InferenceStatus,
    *,
    current: str | None,
    desired_version: str | None,
    desired_target: str | None,
    served: Sequence[str],
    installed: Sequence[str],
) -> RejectionPlan:
    """Go back to what serves: the version the inference module says it serves, else the newest version
    it reported serving; never to the refused version itself nor to one that is no longer installed."""
    is_desired = desired_version == status.version
    if current != status.version and not is_desired:
        return RejectionPlan(restore=None, block_target=None, relevant=False)
    restore: str | None = None
    if current == status.version:
        for candidate in (status.serving_version, *served):
            if candidate is not None and candidate != status.version and candidate in installed:
                restore = candidate
                break
    return RejectionPlan(restore=restore, block_target=desired_target if is_desired else None, relevant=True)


def remember_served(served: Sequence[str], version: str) -> list[str]:
    """`served` with `version` first (newest first, without repeats, at most `SERVED_HISTORY`)."""
    return [version, *(v for v in served if v != version)][:SERVED_HISTORY]


def protected_versions(served: Sequence[str]) -> frozenset[str]:
    """Versions retention must keep: the last two that served, so that whether the newest install or the
    version serving now is refused, there is one to go back to."""
    return frozenset(served[:2])
