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


PROXY_VARIABLES = ("HTTPS_PROXY", "NO_PROXY", "LOADER_HTTPS_PROXY", "LOADER_NO_PROXY")


def test_proxy_comes_from_the_iot_edge_environment_unless_overridden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOADER_MODEL_ROOT", str(tmp_path))
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert LoaderSettings().https_proxy is None and LoaderSettings().no_proxy == ""
    # What IoT Edge hands a module (lower case), credentials included.
    monkeypatch.setenv("https_proxy", "http://user:s3cret@proxy.local:3128")
    monkeypatch.setenv("no_proxy", "localhost,10.0.0.0/8")
    settings = LoaderSettings()
    assert settings.proxy_url == "http://user:s3cret@proxy.local:3128"
    assert settings.no_proxy == "localhost,10.0.0.0/8"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    monkeypatch.setenv("LOADER_HTTPS_PROXY", "http://other.local:8080")
    monkeypatch.setenv("LOADER_NO_PROXY", "*.corp")
    assert (LoaderSettings().proxy_url, LoaderSettings().no_proxy) == ("http://other.local:8080", "*.corp")
    monkeypatch.setenv("LOADER_HTTPS_PROXY", "")  # empty: ignore the environment's proxy, go direct
    assert LoaderSettings().https_proxy is None


@pytest.mark.parametrize(
    "value",
    ["proxy.local:3128", "socks5://proxy.local:1080", "http://proxy.local", "http://:3128", "http://p:99999"],
)
def test_a_proxy_that_is_not_an_http_url_is_refused_without_echoing_it(value: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        LoaderSettings.model_validate({"model_root": str(tmp_path), "https_proxy": value})
    assert "https_proxy" in str(caught.value).lower() and value not in str(caught.value)


def test_redirects_are_bounded(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="max_redirects"):
        LoaderSettings.model_validate({"model_root": str(tmp_path), "max_redirects": 11})
