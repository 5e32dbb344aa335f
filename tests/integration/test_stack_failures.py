"""The local stack fails fast and cleanly when a component cannot start."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge_tools.stack.processes import ProcessFailed
from edge_tools.stack.stack import DEFAULT_MANIFEST, LocalStack
from tests.integration.test_stack_demo import _children_of

pytestmark = pytest.mark.integration


def test_a_simulator_that_exits_fails_the_start_with_its_output_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    manifest = json.loads(DEFAULT_MANIFEST.read_text())
    routes = manifest["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]
    routes["broken"] = "FROM /messages/* INTO $nowhere"
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(manifest))
    before = _children_of(os.getpid())
    with pytest.raises(ProcessFailed, match="edgehub: exited with code") as failure:
        with LocalStack(tmp_path / "stack", manifest=path):
            pytest.fail("the stack started with an unloadable route")
    assert "last output" in str(failure.value)
    assert _children_of(os.getpid()) <= before, "Azurite or the simulator was left running"
