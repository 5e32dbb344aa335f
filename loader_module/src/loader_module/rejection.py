"""What the loader does when the inference module refuses a version: pure decisions, no I/O.

The inference module tells the loader through its routed `InferenceStatus` output which version serves
and which it refused. A refused version that `current` names is replaced by the last version known to
serve; a refused desired target is not installed again until the desired properties change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from edge_shared.messages import InferenceStatus


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
    last_served: str | None,
    installed: Sequence[str],
) -> RejectionPlan:
    """Go back to what serves: the version the inference module says it serves, else the last version
    it reported serving; never to the refused version itself nor to one that is no longer installed."""
    is_desired = desired_version == status.version
    if current != status.version and not is_desired:
        return RejectionPlan(restore=None, block_target=None, relevant=False)
    restore: str | None = None
    if current == status.version:
        for candidate in (status.serving_version, last_served):
            if candidate is not None and candidate != status.version and candidate in installed:
                restore = candidate
                break
    return RejectionPlan(restore=restore, block_target=desired_target if is_desired else None, relevant=True)


def protected_versions(last_served: str | None) -> frozenset[str]:
    """Versions retention must keep: the one to go back to if the newest is refused."""
    return frozenset({last_served}) if last_served is not None else frozenset()
