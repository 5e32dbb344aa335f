"""What the loader must remember across restarts, in one small JSON file written atomically.

The SAS URL is never written to disk: a digest of it tells whether the twin has brought a new URL since a
`sas_expired` failure, and the twin itself (read at every start) provides the URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from edge_shared.desired import DesiredModel
from edge_shared.fsutil import atomic_write_text
from loader_module.rejection import Rejection

logger = logging.getLogger(__name__)

STATE_FILE = ".loader-state.json"


def target_key(desired: DesiredModel) -> str:
    """Names the bytes a desired state asks for; a new URL for the same bytes keeps the same key."""
    digest = desired.content_sha256 or desired.content_md5 or ""
    return f"{desired.version}-{digest[:16]}"


def url_digest(desired: DesiredModel) -> str:
    return hashlib.sha256(desired.download_url.get_secret_value().encode()).hexdigest()


class UpdateRecord(BaseModel):
    """The update in progress or the last one that ended."""

    model_config = ConfigDict(extra="ignore")

    target: str
    version: str
    file_name: str
    url_digest: str
    desired_version: int | None = None
    status: Literal["pending", "failed", "ready"] = "pending"
    error_code: str | None = None
    error_message: str | None = None
    cycle: int = 1
    next_retry_at: datetime | None = None
    started_at: datetime | None = None
    #: `Delta.ContentSHA256` of a delta that could not be used for this target: later cycles and restarts
    #: go straight to the full download (a bad patch stays bad); a new `Delta` is tried again.
    delta_failed: str | None = None


class LoaderState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    update: UpdateRecord | None = None
    #: Last version whose `DLModelOutput` edgeHub accepted; re-announced after a restart if not current.
    announced_version: str | None = None
    #: Desired target the operator rolled back from: not made current again until the desired state changes.
    rolled_back_target: str | None = None
    #: Versions the inference module reported serving, newest first (see `rejection.remember_served`):
    #: where `current` goes back to after a refusal.
    served_versions: list[str] = []
    #: The last version the inference module refused; its target is not installed again until the desired
    #: state changes.
    rejected: Rejection | None = None


class StateStore:
    """Loads and saves `LoaderState` at `<model root>/.loader-state.json`."""

    def __init__(self, root: Path) -> None:
        self.path = root / STATE_FILE

    def load(self) -> LoaderState:
        try:
            return LoaderState.model_validate_json(self.path.read_bytes())
        except FileNotFoundError:
            return LoaderState()
        except (ValidationError, ValueError):
            logger.warning("loader state file is unreadable; starting from a clean state")
            return LoaderState()

    def save(self, state: LoaderState) -> None:
        atomic_write_text(self.path, state.model_dump_json(indent=2) + "\n")


class StateKeeper:
    """The loader's state in memory and on disk: one instance, shared by the coordinator and the runner
    (both on the event loop), which change `state` and then `save` it."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.state = LoaderState()

    async def load(self) -> None:
        self.state = await asyncio.to_thread(self.store.load)

    async def save(self) -> None:
        await asyncio.to_thread(self.store.save, self.state)
