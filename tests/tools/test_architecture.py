"""The architecture rules of `make lint` (import-linter contracts in pyproject.toml) catch what they name.

The real tree keeps every contract; for each rule, a stand-in tree with the same package names and one
forbidden import must break exactly that contract.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("edge_shared", "loader_module", "inference_module", "edgehub_sim", "edge_tools")


def _config(where: Path) -> Path:
    settings = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "importlinter"
    ]
    lines = ["[tool.importlinter]", _toml("root_packages", settings["root_packages"]),
             f"include_external_packages = {str(settings['include_external_packages']).lower()}"]  # fmt: skip
    for contract in settings["contracts"]:
        lines.append("[[tool.importlinter.contracts]]")
        lines.extend(_toml(key, value) for key, value in contract.items())
    path = where / "importlinter.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml(key: str, value: object) -> str:
    if isinstance(value, list):
        return f"{key} = [{', '.join(repr(item) for item in value)}]".replace("'", '"')
    return f'{key} = "{value}"'


def _lint(root: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _stand_in_tree(root: Path, violation: tuple[str, str] | None) -> None:
    for package in PACKAGES:
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    for sub in ("runtimes", "api"):
        (root / "inference_module" / sub).mkdir()
        (root / "inference_module" / sub / "__init__.py").write_text("")
    (root / "edge_shared" / "azure_edgehub.py").write_text("from azure.iot.device import Message\n")
    (root / "edge_shared" / "delta").mkdir()
    (root / "edge_shared" / "delta" / "__init__.py").write_text("")
    (root / "edge_tools" / "bench.py").write_text("import loader_module\nimport inference_module\n")
    if violation is not None:
        module, statement = violation
        (root / Path(*module.split("."))).with_suffix(".py").write_text(statement + "\n")


def test_the_repository_keeps_every_contract() -> None:
    done = subprocess.run(
        [str(LINT_IMPORTS)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_stand_in_tree_alone_keeps_every_contract(tmp_path: Path) -> None:
    _stand_in_tree(tmp_path / "src", None)
    done = _lint(tmp_path / "src", _config(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("violation", "contract"),
    [
        (("edge_shared.leak", "import loader_module"), "the modules above the shared contracts"),
        (("loader_module.peek", "import inference_module"), "the two modules are independent"),
        (("inference_module.peek", "import edgehub_sim"), "The modules never import the simulator"),
        (("edgehub_sim.peek", "import inference_module"), "The simulator is generic"),
        (("inference_module.runtimes.web", "import fastapi"), "Runtimes know no HTTP layer"),
        (("inference_module.runtimes.api", "from inference_module.api import x"), "Runtimes know no HTTP"),
        (("loader_module.sdk", "from azure.iot.device import Message"), "Only the adapter imports"),
        (
            ("edge_tools.helper", "from tests.fake_edgehub import FakeEdgeHubClient"),
            "never imports the tests",
        ),
        (("inference_module.patching", "from edge_shared.delta import x"), "never imports the delta codecs"),
        (("inference_module.patching", "import zstandard"), "never imports the delta codecs"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, violation: tuple[str, str], contract: str
) -> None:
    _stand_in_tree(tmp_path / "src", violation)
    done = _lint(tmp_path / "src", _config(tmp_path))
    assert done.returncode != 0
    report = " ".join(done.stdout.split())  # the report wraps long names
    names = [
        c["name"]
        for c in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
            "contracts"
        ]
    ]
    (name,) = [n for n in names if contract in n]
    assert f"{name} BROKEN" in report, done.stdout
    assert report.count("BROKEN") == 1, done.stdout  # that contract alone


def test_the_pre_commit_hooks_run_the_same_checks_as_make() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "pre-commit"), "validate-config", ".pre-commit-config.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = (REPO_ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8")
    assert "entry: make lint\n" in text and "entry: make typecheck\n" in text
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "\t$(RUN) lint-imports" in makefile.split("\nlint:")[1].split("\n\n")[0]
