"""What both modules say about their settings: `--help` lists every variable, an invalid one is named by
its variable and its value is never echoed (it may hold a token or a proxy password)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edge_shared.settings import ServiceSettings
from inference_module.settings import InferenceSettings
from loader_module.settings import LoaderSettings

MODULES: dict[str, type[ServiceSettings]] = {
    "loader_module": LoaderSettings,
    "inference_module": InferenceSettings,
}


def _run(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LOADER_", "INFERENCE_", "IOTEDGE_"))}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_help_lists_every_setting_and_starts_nothing(module: str) -> None:
    done = _run(module, "--help")
    assert done.returncode == 0, done.stderr
    prefix = str(MODULES[module].model_config["env_prefix"])
    for field in MODULES[module].model_fields:
        assert f"  {prefix}{field.upper()}  (" in done.stdout
    assert done.stderr == ""  # no log line: nothing was started


def test_an_invalid_inference_setting_is_named_and_its_value_never_echoed() -> None:
    secret_looking = "https://user:s3cr3t-pass@proxy.invalid:abc"
    done = _run("inference_module", INFERENCE_PORT=secret_looking)
    assert done.returncode == 2
    record = json.loads(done.stderr.strip().splitlines()[-1])
    assert record["msg"] == "invalid INFERENCE_ settings"
    assert [p.split(":")[0] for p in record["problems"]] == ["INFERENCE_PORT"]
    assert "s3cr3t" not in done.stderr and "Traceback" not in done.stderr
