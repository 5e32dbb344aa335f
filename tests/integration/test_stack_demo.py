"""The `make demo` code path, end to end: real Azurite, simulator, loader and inference processes."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from edge_tools.stack.demo import run_demo
from edge_tools.stack.stack import REPO_ROOT

pytestmark = pytest.mark.integration


def test_demo_publishes_detects_and_swaps_without_failed_requests(tmp_path: Path) -> None:
    out = io.StringIO()
    before = _children_of(os.getpid())
    code = run_demo(
        tmp_path / "stack", REPO_ROOT / "build" / "fixtures", out, artifacts=tmp_path / "artifacts"
    )
    text = out.getvalue()
    assert code == 0, text
    assert "installed by the loader and served (onnx)" in text
    assert re.search(r"person\s+score 0\.\d\d", text), text
    assert re.search(r"car\s+score 0\.\d\d", text), text
    failed = re.search(r"(\d+) failed; answered by version: (.*)", text)
    assert failed is not None and failed.group(1) == "0", text
    assert "tiny-yolo-2" in failed.group(2)
    assert "demo complete" in text
    assert _children_of(os.getpid()) <= before, "the demo left a process behind"
    # The real pretrained detector (fixtures are built with the real models by `make fixtures`).
    assert re.search(r"face\s+score 0\.[5-9]\d", text), text
    assert (tmp_path / "artifacts" / "demo-face-annotated.jpg").stat().st_size > 10_000
    # Coral's COCO SSD with its coco_labels.txt as shipped: the cat is a cat.
    assert "class names from the label file coco_labels.txt" in text, text
    assert re.search(r"cat\s+score 0\.[5-9]\d", text), text
    assert (tmp_path / "artifacts" / "demo-coco-annotated.jpg").stat().st_size > 10_000


def _children_of(pid: int) -> set[int]:
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # field 4 (after the parenthesised command name) is the parent pid
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.add(int(entry.name))
    return children
