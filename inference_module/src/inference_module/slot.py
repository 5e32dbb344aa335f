"""The model slot: one reference to the serving model, switched atomically; old models closed when idle.

Readers (`acquire`/`release`, from any thread) take `current` once per request and hold it until their
request is done, so a request in flight finishes on the model it started with. A swap only replaces
the reference; the old model is closed by whoever drops its last reference: the swap itself when it was
idle, else the last request that used it. Swaps are serialised by the service, never reads.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge_shared.reported import ActiveModel, Runtime
from inference_module.announcement import LoadRequest
from inference_module.errors import NoModelError
from inference_module.labels import Labels
from inference_module.runtimes.base import Detector

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """Where a model came from; what `/model` and the `ActiveModel` report show."""

    version: str
    file_name: str
    runtime: Runtime
    sha256: str
    model_path: Path
    labels_path: Path | None
    loaded_at: datetime
    labels_source: str = "label file"
    """Where the class names came from: the package's label file, or names embedded in the model."""
    fallback_from: str | None = None
    fallback_reason: str | None = None

    def load_request(self) -> LoadRequest:
        """What loads this same model again (a restore, or another worker's copy)."""
        return LoadRequest(
            version=self.version,
            file_name=self.file_name,
            model_path=self.model_path,
            labels_path=self.labels_path,
            expected_sha256=self.sha256,
            announced_runtime=self.runtime,
        )

    def active_model(self) -> ActiveModel:
        return ActiveModel(
            version=self.version,
            file_name=self.file_name,
            runtime=self.runtime,
            loaded_at=self.loaded_at,
            sha256=self.sha256,
            fallback_from=self.fallback_from,
            fallback_reason=self.fallback_reason,
        )


class LoadedModel:
    """A warmed detector with its labels and identity, plus the count of requests using it."""

    def __init__(self, detector: Detector, labels: Labels, identity: ModelIdentity) -> None:
        self.detector = detector
        self.labels = labels
        self.identity = identity
        self.in_flight = 0
        self.retired = False
        self.closed = threading.Event()

    def close(self) -> None:
        try:
            self.detector.close()
        except Exception:
            logger.exception("closing model failed", extra={"model_version": self.identity.version})
        finally:
            self.closed.set()
            logger.info("model closed", extra={"model_version": self.identity.version})


class ModelSlot:
    """Holds the serving model; thread-safe. A plain lock guards the reference and the counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: LoadedModel | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def acquire(self) -> LoadedModel:
        """The serving model, counted as in use until `release`; `NoModelError` when there is none."""
        with self._lock:
            model = self._current
            if model is None:
                raise NoModelError("no model is loaded yet")
            model.in_flight += 1
            return model

    def release(self, model: LoadedModel) -> None:
        with self._lock:
            model.in_flight -= 1
            close_now = model.retired and model.in_flight == 0
        if close_now:
            model.close()

    def install(self, model: LoadedModel | None) -> LoadedModel | None:
        """Switch the reference to `model` (None unloads); the old one closes once idle. Returns it."""
        with self._lock:
            old, self._current = self._current, model
            close_now = False
            if old is not None:
                old.retired = True
                close_now = old.in_flight == 0
        if close_now and old is not None:
            old.close()
        return old

    def close(self) -> None:
        """Unload at shutdown (in-flight requests still finish first)."""
        self.install(None)
