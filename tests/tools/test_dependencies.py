"""Each workspace member declares what it imports (deptry, run by `make lint`), and the locked
dependency trees keep what an image does not need out of it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPTRY = Path(sys.executable).parent / "deptry"
MEMBERS = ("shared", "loader_module", "inference_module", "tools")


def _deptry(member: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEPTRY), "src", "--no-ansi"],
        cwd=member,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_makefile_checks_every_member() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"MEMBERS := {' '.join(MEMBERS)}\n" in makefile
    lint = makefile.split("\nlint:")[1].split("\n\n")[0]
    assert "for member in $(MEMBERS); do (cd $$member && $(RUN) deptry src) || exit 1; done" in lint
    workspace = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    assert tuple(workspace["members"]) == MEMBERS


@pytest.mark.parametrize("member", MEMBERS)
def test_every_member_declares_what_it_imports(member: str) -> None:
    done = _deptry(REPO_ROOT / member)
    assert done.returncode == 0, done.stdout + done.stderr


def _stand_in_member(root: Path, dependencies: list[str], module: str) -> Path:
    (root / "src" / "standin").mkdir(parents=True)
    (root / "src" / "standin" / "__init__.py").write_text(module, encoding="utf-8")
    deps = ", ".join(f'"{dep}"' for dep in dependencies)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "standin"\nversion = "0"\ndependencies = [{deps}]\n'
        '[tool.deptry]\nknown_first_party = ["standin"]\n',
        encoding="utf-8",
    )
    return root


def test_a_member_passes_when_it_declares_its_imports(tmp_path: Path) -> None:
    member = _stand_in_member(tmp_path, ["httpx", "pydantic"], "import httpx\nimport pydantic\n")
    done = _deptry(member)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_undeclared_import_fails_the_check(tmp_path: Path) -> None:
    # pydantic is installed (another member declares it) but this one does not: the drift the check is for.
    member = _stand_in_member(tmp_path, ["httpx"], "import httpx\nimport pydantic\n")
    done = _deptry(member)
    assert done.returncode != 0
    assert "DEP003 'pydantic' imported but it is a transitive dependency" in done.stderr


def test_a_declared_dependency_nothing_imports_fails_the_check(tmp_path: Path) -> None:
    member = _stand_in_member(tmp_path, ["httpx", "pydantic"], "import httpx\n")
    done = _deptry(member)
    assert done.returncode != 0
    assert "DEP002 'pydantic' defined as a dependency but not used" in done.stderr


def _locked_closure(root: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every package `root[extras]` pulls in according to uv.lock (platform markers ignored: a superset)."""
    lock: dict[str, Any] = tomllib.loads((REPO_ROOT / "uv.lock").read_text(encoding="utf-8"))
    packages = {package["name"]: package for package in lock["package"]}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        package = packages[name]
        dependencies = list(package.get("dependencies", []))
        for extra in wanted:
            dependencies += package.get("optional-dependencies", {})[extra]
        todo += [(dep["name"], frozenset(dep.get("extra", []))) for dep in dependencies]
    return {name for name, _ in seen}


def test_the_inference_module_does_not_pull_the_delta_codecs() -> None:
    inference = _locked_closure("inference-module")
    assert "edge-shared" in inference and "azure-iot-device" in inference  # it talks to edgeHub
    assert not {"zstandard", "bsdiff4"} & inference
    assert {"zstandard", "bsdiff4"} <= _locked_closure("loader-module")  # the loader applies deltas


def test_the_shared_contracts_alone_pull_neither_the_sdk_nor_the_codecs() -> None:
    assert not {"azure-iot-device", "zstandard", "bsdiff4"} & _locked_closure("edge-shared")


def test_the_simulator_image_does_not_pull_the_modules_unless_benchmarking() -> None:
    tools = _locked_closure("edge-tools")
    assert not {"loader-module", "inference-module", "onnxruntime", "fastapi"} & tools
    assert {"loader-module", "inference-module", "fastapi"} <= _locked_closure(
        "edge-tools", frozenset({"bench"})
    )
