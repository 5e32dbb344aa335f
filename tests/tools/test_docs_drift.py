"""Docs that quote commands, options or variables stay true to the code."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([*REPO_ROOT.glob("docs/*.md"), *REPO_ROOT.glob("**/README.md")])
DOCS = [path for path in DOCS if not {".venv", "node_modules", "build"} & set(path.parts)]
BENCH_COMMAND = re.compile(r"python -m (edge_tools\.bench(?:\.\w+)?)([^`\n#]*)")


def _help_text(module: str) -> str:
    """`--help` of a benchmark command, run in process."""
    loaded = importlib.import_module("edge_tools.bench.cli" if module == "edge_tools.bench" else module)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        loaded.main(["--help"])
    return out.getvalue()


def _quoted_bench_options() -> dict[str, set[str]]:
    quoted: dict[str, set[str]] = {}
    for path in DOCS:
        for module, rest in BENCH_COMMAND.findall(path.read_text(encoding="utf-8")):
            quoted.setdefault(module, set()).update(re.findall(r"--[a-z][a-z0-9-]*", rest))
    return quoted


def test_the_docs_quote_benchmark_commands() -> None:
    quoted = _quoted_bench_options()
    assert {"edge_tools.bench", "edge_tools.bench.download_probe", "edge_tools.bench.delta_rows"} <= set(
        quoted
    )


@pytest.mark.parametrize("module", sorted(_quoted_bench_options()))
def test_every_benchmark_option_the_docs_quote_exists(module: str) -> None:
    text = _help_text(module)
    missing = sorted(flag for flag in _quoted_bench_options()[module] if flag not in text)
    assert not missing, f"docs quote {missing} for python -m {module}, which has no such option"


def test_every_variable_the_cli_reads_is_documented() -> None:
    tools = REPO_ROOT / "tools/src/edge_tools"
    sources = [*(tools / "publish").glob("*.py"), *(tools / "rollout").glob("*.py")]
    # Every quoted EDGE_ name: read directly (`os.environ.get`) or through an option helper.
    read = {name for path in sources for name in re.findall(r'"(EDGE_[A-Z0-9_]+)"', path.read_text())}
    assert {"EDGE_HUB_CA_FILE", "EDGE_STORAGE_CA_FILE"} <= read
    architecture = (REPO_ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    assert not {name for name in read if f"`{name}`" not in architecture}


def test_the_makefile_declares_exactly_its_targets_phony() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    (phony_line,) = re.findall(r"^\.PHONY:(.*)$", makefile, flags=re.M)
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", makefile, flags=re.M))
    assert set(phony_line.split()) == targets
