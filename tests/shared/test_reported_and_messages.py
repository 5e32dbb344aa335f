"""Reported properties and routed messages keep the contract's key names through a round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from edge_shared.messages import InferenceStatus, ModelAnnouncement, ModelStatusEvent
from edge_shared.reported import ActiveModel, LoaderReported, ModelUpdate, UpdateError, UpdateState

SHA = "ab" * 32


def test_model_update_uses_camel_case_keys_and_round_trips() -> None:
    update = ModelUpdate(
        state=UpdateState.DOWNLOADING,
        file_name="m-1.zip",
        version="m-1",
        desired_version=4,
        bytes_done=10,
        bytes_total=100,
        percent=10.0,
        attempt=2,
        error=UpdateError(code="download_failed", message="connection reset"),
        next_retry_at=datetime(2026, 1, 1, tzinfo=UTC),
        source="full",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    twin = update.to_twin()
    assert set(twin) == {
        "state", "fileName", "version", "desiredVersion", "bytesDone", "bytesTotal", "percent",
        "attempt", "error", "nextRetryAt", "source", "startedAt", "finishedAt",
    }  # fmt: skip
    assert twin["state"] == "downloading"
    assert twin["error"] == {"code": "download_failed", "message": "connection reset"}
    assert ModelUpdate.model_validate(json.loads(json.dumps(twin))) == update


def test_loader_reported_section_keys() -> None:
    reported = LoaderReported(
        latest_file_name="m-2.zip",
        model_update=ModelUpdate(state=UpdateState.READY),
        installed_models=["m-2"],
    )
    twin = reported.to_twin()
    assert twin["LatestAIModelFileName"] == "m-2.zip"
    assert twin["ModelUpdate"]["state"] == "ready"
    assert twin["InstalledModels"] == ["m-2"]
    assert LoaderReported.model_validate(twin) == reported


def test_terminal_states() -> None:
    assert UpdateState.READY.terminal and UpdateState.FAILED.terminal
    assert not UpdateState.DOWNLOADING.terminal


def test_active_model_round_trip() -> None:
    active = ActiveModel(
        version="1.1",
        file_name="m.zip",
        runtime="onnx",
        loaded_at=datetime(2026, 1, 1, tzinfo=UTC),
        sha256=SHA,
    )
    twin = active.to_twin()
    assert set(twin) == {
        "version",
        "fileName",
        "runtime",
        "loadedAt",
        "sha256",
        "fallbackFrom",
        "fallbackReason",
    }
    # Null, not absent: a swap after a start-up fallback must delete the keys from the twin (merge patch).
    assert twin["fallbackFrom"] is None and twin["fallbackReason"] is None
    assert ActiveModel.model_validate(twin) == active


def test_inference_status_uses_camel_case_and_refuses_bad_versions() -> None:
    status = InferenceStatus(
        state="rejected", version="1.2", code="load_failed", message="no", serving_version="1.1"
    )
    body = json.loads(status.to_json_bytes())
    assert body == {
        "state": "rejected",
        "version": "1.2",
        "code": "load_failed",
        "message": "no",
        "servingVersion": "1.1",
    }
    assert InferenceStatus.model_validate_json(status.to_json_bytes()) == status
    with pytest.raises(ValidationError):
        InferenceStatus.model_validate({"state": "serving", "version": "../etc"})
    with pytest.raises(ValidationError):
        InferenceStatus.model_validate({"state": "unknown", "version": "1.2"})


def test_announcement_keeps_reference_keys_and_round_trips() -> None:
    message = ModelAnnouncement(
        local_model_path="models/1.1/model.onnx",
        local_labelmap_path="models/1.1/labels.txt",
        version="1.1",
        file_name="tiny-yolov3-1.1.zip",
        runtime="onnx",
        sha256=SHA,
    )
    body = json.loads(message.to_json_bytes())
    assert body["local_model_path"] == "models/1.1/model.onnx"
    assert body["local_labelmap_path"] == "models/1.1/labels.txt"
    assert ModelAnnouncement.model_validate(body) == message


@pytest.mark.parametrize("path", ["/etc/passwd", "../../etc/passwd", "models/../../x", "C:/x", "", "a//b"])
def test_announcement_refuses_paths_that_leave_the_root(path: str) -> None:
    with pytest.raises(ValidationError, match="local_model_path"):
        ModelAnnouncement(
            local_model_path=path,
            local_labelmap_path="models/1/labels.txt",
            version="1",
            file_name="m.zip",
            runtime="onnx",
            sha256=SHA,
        )


def test_status_event_has_no_url_and_camel_keys() -> None:
    event = ModelStatusEvent(
        state=UpdateState.FAILED,
        version="2",
        file_name="m-2.zip",
        error=UpdateError(code="checksum_mismatch", message="MD5 differs"),
        duration_seconds=1.5,
        bytes_downloaded=100,
        source="full",
    )
    body = json.loads(event.to_json_bytes())
    assert set(body) == {
        "state",
        "version",
        "fileName",
        "error",
        "durationSeconds",
        "bytesDownloaded",
        "source",
    }
    assert ModelStatusEvent.model_validate(body) == event
