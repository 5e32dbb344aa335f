"""`InferenceSettings`: `INFERENCE_` variables, defaults from architecture §7, unsafe values refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from inference_module.settings import InferenceSettings


def test_defaults_follow_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INFERENCE_HOST", "INFERENCE_PORT", "INFERENCE_SCORE_THRESHOLD", "INFERENCE_SWAP_MODE"):
        monkeypatch.delenv(name, raising=False)
    settings = InferenceSettings()
    assert (settings.host, settings.port, settings.score_threshold) == ("0.0.0.0", 8080, 0.5)
    assert settings.swap_mode == "preserve-availability"
    assert settings.edgehub is True


def test_environment_variables_with_the_prefix_apply(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INFERENCE_MODEL_ROOT", str(tmp_path))
    monkeypatch.setenv("INFERENCE_EDGEHUB", "false")
    monkeypatch.setenv("INFERENCE_SWAP_MODE", "preserve-memory")
    monkeypatch.setenv("INFERENCE_PIPELINE_THREADS", "4")
    settings = InferenceSettings()
    assert (settings.model_root, settings.edgehub, settings.swap_mode) == (tmp_path, False, "preserve-memory")
    assert settings.pipeline_threads == 4


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INFERENCE_SCORE_THRESHOLD", "1.5"),
        ("INFERENCE_PORT", "70000"),
        ("INFERENCE_PIPELINE_THREADS", "0"),
        ("INFERENCE_SWAP_MODE", "yolo"),
        ("INFERENCE_MAX_IMAGE_PIXELS", "999999999999"),
        ("INFERENCE_MAX_IMAGE_BYTES", "10"),
    ],
)
def test_unsafe_values_are_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        InferenceSettings()
    assert name.removeprefix("INFERENCE_").lower() in str(caught.value)


def test_every_field_is_documented() -> None:
    undocumented = [name for name, field in InferenceSettings.model_fields.items() if not field.description]
    assert undocumented == []
