"""The slot: requests finish on the model they started with; the old model closes only when idle."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from inference_module.errors import NoModelError
from inference_module.labels import parse_labels
from inference_module.slot import LoadedModel, ModelIdentity, ModelSlot
from tests.inference.helpers import GatedDetector

WAIT = 10.0


def loaded(detector: GatedDetector, version: str) -> LoadedModel:
    identity = ModelIdentity(
        version=version,
        file_name=f"{version}.zip",
        runtime="onnx",
        sha256="0" * 64,
        model_path=Path(f"/models/{version}/model.onnx"),
        labels_path=Path(f"/models/{version}/labels.txt"),
        loaded_at=datetime.now(UTC),
    )
    return LoadedModel(detector, parse_labels("person\n"), identity)


def score_in_thread(slot: ModelSlot, seen: list[str]) -> threading.Thread:
    def work() -> None:
        model = slot.acquire()
        try:
            model.detector.detect(Image.new("RGB", (8, 8)))
            seen.append(model.identity.version)
        finally:
            slot.release(model)

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_empty_slot_refuses_with_no_model() -> None:
    with pytest.raises(NoModelError):
        ModelSlot().acquire()


def test_request_in_flight_finishes_on_the_old_model_which_closes_afterwards() -> None:
    slot = ModelSlot()
    old, new = GatedDetector("v1"), GatedDetector("v2")
    new.gate.set()
    slot.install(loaded(old, "v1"))
    seen: list[str] = []
    thread = score_in_thread(slot, seen)
    assert old.entered.wait(WAIT)

    slot.install(loaded(new, "v2"))
    assert not old.closed.is_set(), "closed while a request was still using it"
    later = score_in_thread(slot, seen)
    later.join(WAIT)
    assert seen == ["v2"]

    old.gate.set()
    thread.join(WAIT)
    assert seen == ["v2", "v1"]
    assert old.closed.is_set()
    assert not new.closed.is_set()


def test_idle_old_model_is_closed_by_the_swap_itself() -> None:
    slot = ModelSlot()
    old = GatedDetector("v1")
    previous = loaded(old, "v1")
    slot.install(previous)
    assert slot.install(loaded(GatedDetector("v2"), "v2")) is previous
    assert old.closed.is_set()
    assert previous.closed.is_set()


def test_unloading_leaves_no_model_and_closes_at_shutdown() -> None:
    slot = ModelSlot()
    detector = GatedDetector("v1")
    slot.install(loaded(detector, "v1"))
    slot.close()
    assert slot.current is None
    assert detector.closed.is_set()
    with pytest.raises(NoModelError):
        slot.acquire()
