"""Readers for the deployment topology files: deployment.json, docker-compose.test.yml, Dockerfiles, uv.lock.

Docker is not available where the tests run, so these read the files as data; `test_topology.py` checks
that they agree with each other.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.markers import Marker
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from edge_shared.desired import desired_is_empty, parse_desired

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = REPO_ROOT / "deployment.json"
COMPOSE = REPO_ROOT / "docker-compose.test.yml"
SCHEMA = Path(__file__).with_name("iotedge_deployment.schema.json")
UV_LOCK = REPO_ROOT / "uv.lock"
#: Compose service → the Python package its image installs (`uv sync --package ...`).
IMAGE_PACKAGES = {"loader": "loader-module", "inference": "inference-module", "edgehub": "edge-tools"}

# python:3.11-slim-bookworm on linux/arm64: CPython 3.11, glibc 2.36.
_ARM64_PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)] + ["manylinux2014_aarch64"]
ARM64_TAGS: frozenset[Tag] = frozenset(
    [*cpython_tags((3, 11), abis=["cp311", "abi3", "none"], platforms=_ARM64_PLATFORMS),
     *compatible_tags((3, 11), "cp311", _ARM64_PLATFORMS)]
)  # fmt: skip
ARM64_MARKER_ENV = {
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "python_version": "3.11",
    "python_full_version": "3.11.14",
    "extra": "",
}


def load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def load_compose(path: Path = COMPOSE) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def agent_desired(manifest: Mapping[str, Any]) -> dict[str, Any]:
    desired: dict[str, Any] = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]
    return desired


def hub_desired(manifest: Mapping[str, Any]) -> dict[str, Any]:
    desired: dict[str, Any] = manifest["modulesContent"]["$edgeHub"]["properties.desired"]
    return desired


def create_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`createOptions` (plus `createOptions01`..`07`, concatenated as edgeAgent does) parsed as JSON.

    Raises ValueError when the string is not a JSON object: edgeAgent would refuse to create the module.
    """
    text = str(settings.get("createOptions", "{}"))
    text += "".join(
        str(settings[f"createOptions0{i}"]) for i in range(1, 8) if f"createOptions0{i}" in settings
    )
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"createOptions is not JSON: {exc.msg} at {exc.pos}") from exc
    if not isinstance(parsed, dict):
        raise ValueError("createOptions must be a JSON object")
    return parsed


def check_loader_desired(desired: Mapping[str, Any]) -> None:
    """The loader's desired section must ask for nothing or name a valid model (architecture §3).

    Raises `InvalidDesiredError` from the contract otherwise.
    """
    if not desired_is_empty(desired):
        parse_desired(desired)


def port_bindings(options: Mapping[str, Any]) -> list[str]:
    """HostConfig.PortBindings as compose short syntax `HOST:CONTAINER` (tcp only)."""
    bindings = options.get("HostConfig", {}).get("PortBindings", {})
    result: list[str] = []
    for container, hosts in bindings.items():
        port, _, protocol = container.partition("/")
        assert protocol in ("", "tcp"), container
        result.extend(f"{host['HostPort']}:{port}" for host in hosts)
    return sorted(result)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    argument: str


def dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, argument = line.partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(argument.split())))
    return instructions


def dockerfile_env(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in instructions:
        if item.keyword == "ENV":
            env.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", item.argument))
    return env


# --- uv.lock -----------------------------------------------------------------------------------------


def lock_packages(path: Path = UV_LOCK) -> dict[str, list[dict[str, Any]]]:
    lock = tomllib.loads(path.read_text(encoding="utf-8"))
    packages: dict[str, list[dict[str, Any]]] = {}
    for package in lock["package"]:
        packages.setdefault(package["name"], []).append(package)
    return packages


def _applies(dependency: Mapping[str, Any]) -> bool:
    marker = dependency.get("marker")
    return marker is None or Marker(marker).evaluate(ARM64_MARKER_ENV)


def runtime_closure(packages: Mapping[str, list[dict[str, Any]]], root: str) -> list[dict[str, Any]]:
    """Every locked package `uv sync --no-dev --package ROOT` installs on linux/arm64 (extras followed)."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    todo: list[tuple[str, str | None, tuple[str, ...]]] = [(root, None, ())]
    while todo:
        name, version, extras = todo.pop()
        for package in packages[name]:
            if version is not None and package.get("version") != version:
                continue
            key = (name, str(package.get("version")))
            fresh = key not in seen
            seen[key] = package
            dependencies = list(package.get("dependencies", [])) if fresh else []
            for extra in extras:
                dependencies += package.get("optional-dependencies", {}).get(extra, [])
            for dependency in dependencies:
                if _applies(dependency):
                    todo.append(
                        (dependency["name"], dependency.get("version"), tuple(dependency.get("extra", [])))
                    )
    return list(seen.values())


def is_workspace_member(package: Mapping[str, Any]) -> bool:
    source = package.get("source", {})
    return "editable" in source or "virtual" in source


def arm64_wheels(package: Mapping[str, Any]) -> list[str]:
    """Locked wheel file names installable on CPython 3.11 linux/arm64 (glibc 2.36)."""
    names = [str(wheel["url"]).rsplit("/", 1)[1] for wheel in package.get("wheels", [])]
    return [name for name in names if parse_wheel_filename(name)[3] & ARM64_TAGS]


def built_wheel_is_pure(name: str) -> bool:
    """For an sdist-only package: the wheel uv built here says `Root-Is-Purelib` and `py3-none-any`."""
    try:
        metadata = importlib.metadata.distribution(name).read_text("WHEEL") or ""
    except importlib.metadata.PackageNotFoundError:
        return False
    return "Root-Is-Purelib: true" in metadata and bool(re.search(r"^Tag: py3-none-any$", metadata, re.M))


def arm64_gaps(packages: Mapping[str, list[dict[str, Any]]], root: str) -> Iterator[str]:
    """`name==version` of each runtime dependency with neither an arm64 wheel nor a pure-Python build."""
    for package in runtime_closure(packages, root):
        if is_workspace_member(package) or arm64_wheels(package):
            continue
        if not package.get("wheels") and "sdist" in package and built_wheel_is_pure(package["name"]):
            continue
        yield f"{package['name']}=={package.get('version')}"
