"""The `/score` and error body contracts (architecture §7) as sibling modules validate them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge_shared.scoring import AvaScoreResponse, ErrorBody, ModelInfo, ScoreResponse

NATIVE = (
    b'{"model": {"version": "1.1", "runtime": "onnx"}, "image": {"width": 640, "height": 480},'
    b' "detections": [{"label": "dog", "class_id": 16, "score": 0.91,'
    b' "box": {"left": 0.12, "top": 0.30, "width": 0.25, "height": 0.40}}], "inference_ms": 12.3}'
)


def test_the_design_example_is_a_valid_native_response() -> None:
    response = ScoreResponse.model_validate_json(NATIVE)
    assert response.detections[0].label == "dog"
    assert response.detections[0].box.height == 0.40


@pytest.mark.parametrize(
    "broken",
    [
        NATIVE.replace(b'"left": 0.12', b'"left": 1.5'),
        NATIVE.replace(b'"score": 0.91', b'"score": -0.1'),
        NATIVE.replace(b'"runtime": "onnx"', b'"runtime": "pytorch"'),
        NATIVE.replace(b'"inference_ms": 12.3', b'"inference_ms": 12.3, "extra": 1'),
    ],
)
def test_out_of_contract_responses_are_rejected(broken: bytes) -> None:
    with pytest.raises(ValidationError):
        ScoreResponse.model_validate_json(broken)


def test_ava_shape() -> None:
    body = (
        b'{"inferences": [{"type": "entity", "entity": {"tag": {"value": "person", "confidence": 0.8},'
        b' "box": {"l": 0.1, "t": 0.2, "w": 0.3, "h": 0.4}}}]}'
    )
    parsed = AvaScoreResponse.model_validate_json(body)
    assert parsed.inferences[0].entity.box.w == 0.3
    with pytest.raises(ValidationError):
        AvaScoreResponse.model_validate_json(body.replace(b'"entity", "entity"', b'"event", "entity"'))


def test_error_body_and_model_info() -> None:
    error = ErrorBody.model_validate_json(b'{"error": {"code": "no_model", "message": "no model is loaded"}}')
    assert error.error.code == "no_model"
    info = ModelInfo.model_validate(
        {
            "version": "v1",
            "file_name": "v1.zip",
            "runtime": "tflite",
            "input_shape": [1, 300, 300, 3],
            "labels_count": 91,
            "loaded_at": "2026-01-01T00:00:00Z",
            "sha256": "a" * 64,
        }
    )
    assert info.loaded_at.year == 2026
