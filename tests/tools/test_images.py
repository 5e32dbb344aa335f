"""`make images` / `make compose-test` logic that needs no engine: command lines, the Debian root's
trimming, tags agreeing with docker-compose.test.yml, parsing what the engine prints. The real build
and compose run are `make images` and `make compose-test` (docs/operations.md records their last run)."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from edge_shared.repository import ModelRepository
from edge_tools.fixtures import FixtureCatalog
from edge_tools.images.arm64 import cpuinfo_volume, prepare_models
from edge_tools.images.build import BASES, IMAGES, REPO_ROOT, build_command, host_ca_bundle
from edge_tools.images.compose import ComposeTest, ComposeTestFailed, loader_update, parse_containers
from edge_tools.images.debian import host_mirror, recipe_hash, sources_list, trim
from edge_tools.images.engine import CONTAINERS_CONF, Engine, EngineError, podman_config, select_engine
from edge_tools.images.sizes import ImageSize, markdown, parse_history
from tests.tools.topology import load_compose

PODMAN = Engine("podman")
DOCKER = Engine("docker")


def test_image_tags_are_the_ones_compose_runs() -> None:
    services = load_compose()["services"]
    by_name = {spec.name: spec.tag for spec in IMAGES}
    assert services["loader"]["image"] == by_name["loader"]
    assert services["inference"]["image"] == by_name["inference"]
    assert services["edgehub"]["image"] == by_name["edgehub-sim"]
    assert by_name["azurite"].endswith(":3.35.0")  # the version in package.json and the compose default


def test_every_dockerfile_takes_its_bases_as_arguments_with_the_official_defaults() -> None:
    defaults = {
        "PYTHON_IMAGE": "python:3.11-slim-bookworm",
        "RUNTIME_IMAGE": "${PYTHON_IMAGE}",  # unchanged Dockerfiles build on one official image
        "NODE_IMAGE": "node:20-bookworm-slim",
    }
    for spec in IMAGES:
        text = (REPO_ROOT / spec.dockerfile).read_text(encoding="utf-8")
        for arg in spec.base_args:
            assert f"ARG {arg}={defaults[arg]}\n" in text, (spec.dockerfile, arg)
            assert re.search(rf"^FROM \${{{arg}}}", text, re.MULTILINE), (spec.dockerfile, arg)
        assert "--mount" not in text and "RUN --" not in text  # no BuildKit-only syntax


def test_the_build_context_holds_what_the_dockerfiles_copy_and_no_venv() -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert "*" in ignore  # everything is excluded first, then the sources are let in
    for spec in IMAGES:
        text = (REPO_ROOT / spec.dockerfile).read_text(encoding="utf-8")
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE):
            for source in line.split()[:-1]:
                assert any(
                    source == a or source.startswith(a + "/") or a.startswith(source) for a in allowed
                ), (
                    spec.dockerfile,
                    source,
                )
    assert not any(a.startswith((".venv", "node_modules", "build")) for a in allowed)


def test_podman_builds_keep_healthchecks_and_mount_the_host_ca_only_at_build_time() -> None:
    spec = next(s for s in IMAGES if s.name == "loader")
    bases = {"PYTHON_IMAGE": "localhost/base", "RUNTIME_IMAGE": "localhost/runtime"}
    command = build_command(PODMAN, spec, bases=bases, platform=None, host_ca=Path("/etc/ca.crt"))
    assert command[:5] == ["build", "-f", "loader_module/Dockerfile", "-t", spec.tag]
    assert ["--format", "docker"] == command[5:7]
    assert "/etc/ca.crt:/etc/ssl/certs/ca-certificates.crt:ro" in command
    at = command.index("--build-arg")
    assert command[at : at + 4] == [
        "--build-arg",
        "PYTHON_IMAGE=localhost/base",
        "--build-arg",
        "RUNTIME_IMAGE=localhost/runtime",
    ]
    assert command[-1] == "."


def test_docker_builds_use_plain_docker_arguments() -> None:
    spec = next(s for s in IMAGES if s.name == "azurite")
    command = build_command(DOCKER, spec, bases=None, platform="linux/arm64", host_ca=Path("/etc/ca.crt"))
    assert command == ["build", "-f", spec.dockerfile, "-t", spec.tag, "--platform", "linux/arm64", "."]


def test_the_host_ca_bundle_is_found_from_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert host_ca_bundle() == bundle


def test_bases_are_built_from_the_debian_root() -> None:
    for spec in BASES.values():
        text = (REPO_ROOT / spec.dockerfile).read_text(encoding="utf-8")
        assert "ARG DEBIAN_IMAGE=localhost/edge-model-loader/debian:bookworm" in text
    assert "EXTERNALLY-MANAGED" in (REPO_ROOT / BASES["PYTHON_IMAGE"].dockerfile).read_text()
    assert "pip" not in (REPO_ROOT / BASES["RUNTIME_IMAGE"].dockerfile).read_text().split("FROM")[-1]


def test_the_debian_mirror_is_the_hosts(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert host_mirror(sources) == "http://mirror.example/debian"
    assert host_mirror(tmp_path / "missing") == "http://deb.debian.org/debian"
    assert sources_list("http://m/debian").splitlines() == [
        "deb http://m/debian bookworm main",
        "deb http://m/debian bookworm-updates main",
        "deb http://m/debian-security bookworm-security main",
    ]
    assert recipe_hash("http://a/debian") != recipe_hash("http://b/debian")
    assert recipe_hash("http://a/debian") == recipe_hash("http://a/debian")


def test_the_debian_root_is_trimmed_like_a_slim_image(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    files = {
        "usr/share/doc/bash/copyright": "licence",
        "usr/share/doc/bash/changelog.gz": "x",
        "usr/share/man/man1/ls.1.gz": "x",
        "usr/share/locale/de/LC_MESSAGES/apt.mo": "x",
        "usr/share/locale/locale.alias": "alias",
        "var/cache/apt/archives/bash.deb": "x",
        "var/lib/apt/lists/deb.debian.org_Packages": "x",
        "var/lib/apt/lists/lock": "",
        "usr/bin/bash": "binary",
    }
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    for folder in ("etc/dpkg/dpkg.cfg.d", "etc/apt/apt.conf.d"):
        (root / folder).mkdir(parents=True)
    trim(root, "http://m/debian")
    left = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert left == {
        "usr/share/doc/bash/copyright",
        "usr/share/locale/locale.alias",
        "var/lib/apt/lists/lock",
        "usr/bin/bash",
        "etc/dpkg/dpkg.cfg.d/01-slim",
        "etc/apt/apt.conf.d/01-slim",
        "etc/apt/sources.list",
    }
    assert "path-exclude /usr/share/man/*" in (root / "etc/dpkg/dpkg.cfg.d/01-slim").read_text()
    assert list((root / "usr/share/man").iterdir()) == []  # the folder stays, empty, as dpkg expects


def test_podman_is_configured_by_our_own_file_never_by_etc(tmp_path: Path) -> None:
    env = podman_config(tmp_path)
    conf = Path(env["CONTAINERS_CONF"])
    assert conf.read_text() == CONTAINERS_CONF and conf.is_relative_to(tmp_path)
    assert 'runtime = "runc"' in CONTAINERS_CONF and 'cgroup_manager = "cgroupfs"' in CONTAINERS_CONF


def test_an_unknown_engine_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="unknown container engine 'rkt'"):
        select_engine("rkt", tmp_path)


def test_engines_differ_only_in_compose_and_healthchecks() -> None:
    assert Path(PODMAN.compose[0]).name == "podman-compose" and not PODMAN.runs_healthchecks
    assert DOCKER.compose == ["docker", "compose"] and DOCKER.runs_healthchecks


def test_containers_are_mapped_to_their_compose_services() -> None:
    text = "abc123 loader\n\ndef456 inference\n0a1b2c edgehub\n"
    assert parse_containers(text) == {"loader": "abc123", "inference": "def456", "edgehub": "0a1b2c"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            {"loader": {"ModelUpdate": {"state": "ready", "version": "v1"}}},
            {"state": "ready", "version": "v1"},
        ),
        ({"loader": {}}, {}),
        ({"loader": {"ModelUpdate": None}}, {}),
        ({}, {}),
    ],
)
def test_the_loader_update_is_read_from_edge_model_status(
    status: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert loader_update(status) == expected


class FakeEngine(Engine):
    """Answers the engine commands the compose test sends, from canned outputs (no containers)."""

    unhealthy: frozenset[str]
    update: dict[str, Any]
    ids = {"azurite": "c1", "edgehub": "c2", "loader": "c3", "inference": "c4"}

    def __init__(
        self, *, unhealthy: frozenset[str] = frozenset(), update: dict[str, Any] | None = None
    ) -> None:
        super().__init__("podman")
        object.__setattr__(self, "unhealthy", unhealthy)  # Engine is a frozen dataclass
        object.__setattr__(self, "update", update or {})

    def run(self, args: Sequence[str], *, timeout: float, check: bool = True, quiet: bool = True,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        del timeout, check, quiet, cwd
        out, code = "", 0
        if args[0] == "ps":
            out = "".join(f"{cid} {service}\n" for service, cid in self.ids.items())
        elif args[0] == "healthcheck":
            code = 1 if args[2] in {self.ids[s] for s in self.unhealthy} else 0
        elif args[0] == "exec" and "status --json" in args[-1]:
            out = json.dumps({"loader": {"ModelUpdate": self.update}})
        elif args[0] == "logs":
            out = f"last lines of {args[-1]}\n"
        return subprocess.CompletedProcess(list(args), code, out, "")


@pytest.fixture
def compose_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake_run_command(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        del kwargs
        calls.append(list(argv))
        return subprocess.CompletedProcess(list(argv), 0, "", "")

    monkeypatch.setattr("edge_tools.images.compose.run_command", fake_run_command)
    return calls


def test_a_failed_update_fails_the_compose_test_and_everything_is_still_torn_down(
    compose_calls: list[list[str]],
) -> None:
    error = {"code": "invalid_model", "message": "no model file"}
    engine = FakeEngine(update={"state": "failed", "version": "tiny-yolo-1", "error": error})
    lines: list[str] = []
    test = ComposeTest(engine, lines.append, timeout=5)
    with pytest.raises(ComposeTestFailed, match="the loader failed tiny-yolo-1.*invalid_model"):
        test.run()
    assert [call[-2:] for call in compose_calls] == [["down", "-v"], ["up", "-d"], ["down", "-v"]]
    assert any("last lines of c3" in line for line in lines)  # the containers' logs are shown
    assert [t.name for t in test.timings][-1] == "down"


def test_a_container_that_never_gets_healthy_is_named_and_torn_down(compose_calls: list[list[str]]) -> None:
    test = ComposeTest(FakeEngine(unhealthy=frozenset({"loader"})), lambda _: None, timeout=0.01)
    with pytest.raises(ComposeTestFailed, match="not healthy within 0 s: loader"):
        test.run()
    assert compose_calls[-1][-2:] == ["down", "-v"]


def test_layer_history_is_read_from_either_engine() -> None:
    podman = json.dumps(
        [
            {"CreatedBy": "/bin/sh -c #(nop) COPY dir:0a1b2c in /app/.venv ", "size": 64126976},
            {"CreatedBy": "/bin/sh -c apt-get update && apt-get install -y python3", "size": 48095232},
            {"CreatedBy": '/bin/sh -c #(nop) CMD ["python3"]', "size": 0},
        ]
    )
    docker = "\n".join(
        json.dumps(row)
        for row in [
            {"CreatedBy": "ADD file:ff00 in / ", "Size": "78MB"},
            {"CreatedBy": "USER x", "Size": "0B"},
        ]
    )
    layers = parse_history(podman)
    assert [layer.size for layer in layers] == [64126976, 48095232, 0]
    assert [layer.step for layer in layers][:2] == [
        "COPY … /app/.venv",
        "apt-get update && apt-get install -y python3",
    ]
    assert [(layer.size, layer.step) for layer in parse_history(docker)] == [
        (78_000_000, "ADD … /"),
        (0, "USER x"),
    ]
    table = markdown([ImageSize("loader:1", 190_246_080, tuple(layers))])
    assert "| `loader:1` | 190 MB | 64 MB `COPY … /app/.venv`; 48 MB `apt-get update" in table


def test_the_arm64_smoke_repository_is_what_the_inference_module_reads(
    tmp_path: Path, catalog: FixtureCatalog
) -> None:
    prepare_models(tmp_path / "models", catalog)
    repository = ModelRepository(tmp_path / "models")
    assert repository.current_version() == "tiny-yolo-1"
    assert sorted(repository.installed_versions()) == ["ssd-lite-1", "tiny-yolo-1"]
    for version in repository.installed_versions():
        model, labels, manifest = repository.model_paths(version)
        assert manifest.files[model.name] == hashlib.sha256(model.read_bytes()).hexdigest()
        assert labels is not None and labels.is_file() and stat.S_IMODE(model.stat().st_mode) == 0o644
    assert {repository.read_manifest(v).runtime for v in repository.installed_versions()} == {
        "onnx",
        "tflite",
    }
    assert (tmp_path / "models" / "one-square.jpg").is_file()


def test_the_emulated_arm64_build_sees_an_arm_cpuinfo(tmp_path: Path) -> None:
    volume = cpuinfo_volume(tmp_path)
    source, target, mode = volume.split(":")
    assert (target, mode) == ("/proc/cpuinfo", "ro")
    text = Path(source).read_text()
    assert text.count("CPU implementer\t: 0x41") == 2 and "processor\t: 1" in text  # two Arm cores
    spec = next(s for s in IMAGES if s.name == "inference")
    command = build_command(PODMAN, spec, bases=None, platform="linux/arm64", volumes=[volume])
    assert command[command.index("--volume") + 1] == volume
    assert command[command.index("--platform") + 1] == "linux/arm64"
