"""LoaderSettings: documented, validated at start, read from `LOADER_` variables."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import ValidationError

from loader_module.settings import LoaderSettings

KEY = base64.b64encode(bytes(range(32))).decode()


def test_every_field_is_documented() -> None:
    missing = [name for name, field in LoaderSettings.model_fields.items() if not field.description]
    assert missing == []


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOADER_MODEL_ROOT", str(tmp_path))
    monkeypatch.setenv("LOADER_KEEP_VERSIONS", "5")
    monkeypatch.setenv("LOADER_TRUSTED_KEYS", f"{KEY}, {KEY}")
    monkeypatch.setenv("LOADER_REQUIRE_SIGNATURE", "true")
    settings = LoaderSettings()
    assert settings.model_root == tmp_path
    assert settings.keep_versions == 5
    assert settings.trusted_key_bytes == [bytes(range(32))] * 2


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model_root": "relative/path"}, "model_root"),
        ({"keep_versions": 0}, "keep_versions"),
        ({"trusted_keys": "not-base64!"}, "trusted_keys"),
        ({"require_signature": True}, "LOADER_TRUSTED_KEYS"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"backoff_initial": 10, "backoff_max": 1}, "BACKOFF"),
    ],
)
def test_unsafe_values_are_refused(overrides: dict[str, object], field: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        LoaderSettings.model_validate({"model_root": str(tmp_path), **overrides})
    assert field in str(caught.value)
