"""`make images`: the loader, inference, simulator and Azurite images, on local bases where no image
registry answers.

Where a registry is reachable, the same Dockerfiles build on the official bases (`docker build` with no
build arguments). Here, `--local-base` (the default) first makes Debian-only stand-ins for
`python:3.11-slim-bookworm` and `node:*-bookworm-slim` and passes them as `PYTHON_IMAGE` / `NODE_IMAGE`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edge_tools.images.debian import build_debian_image
from edge_tools.images.engine import Engine

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[4]
DEBIAN_BASE = "localhost/edge-model-loader/debian:bookworm"
PYTHON_BASE = "localhost/edge-model-loader/python:3.11-bookworm"
PYTHON_RUNTIME = "localhost/edge-model-loader/python:3.11-bookworm-runtime"
NODE_BASE = "localhost/edge-model-loader/node:18-bookworm"


@dataclass(frozen=True)
class ImageSpec:
    """One image: its Dockerfile (from the repository root), its tag, and which base arguments it takes."""

    name: str
    dockerfile: str
    tag: str
    base_args: tuple[str, ...]
    context: str = "."


PYTHON_ARGS = ("PYTHON_IMAGE", "RUNTIME_IMAGE")
#: The local stand-in for each base argument, built FROM the Debian root.
BASES = {
    "PYTHON_IMAGE": ImageSpec(
        "python-base", "tools/images/python-base.Dockerfile", PYTHON_BASE, ("DEBIAN_IMAGE",), "tools/images"
    ),
    "RUNTIME_IMAGE": ImageSpec(
        "python-runtime",
        "tools/images/python-runtime.Dockerfile",
        PYTHON_RUNTIME,
        ("DEBIAN_IMAGE",),
        "tools/images",
    ),
    "NODE_IMAGE": ImageSpec(
        "node-base", "tools/images/node-base.Dockerfile", NODE_BASE, ("DEBIAN_IMAGE",), "tools/images"
    ),
}
#: The images of docker-compose.test.yml (tests/tools/test_images.py checks the tags agree with it).
IMAGES = (
    ImageSpec("loader", "loader_module/Dockerfile", "edgemodelloader.azurecr.io/loader:0.1.0", PYTHON_ARGS),
    ImageSpec(
        "inference", "inference_module/Dockerfile", "edgemodelloader.azurecr.io/inference:0.1.0", PYTHON_ARGS
    ),
    ImageSpec("edgehub-sim", "tools/Dockerfile", "edge-model-loader/edgehub-sim:0.1.0", PYTHON_ARGS),
    ImageSpec(
        "azurite", "tools/images/azurite.Dockerfile", "edge-model-loader/azurite:3.35.0", ("NODE_IMAGE",)
    ),
)
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def host_ca_bundle() -> Path | None:
    """The CA bundle this machine trusts (`SSL_CERT_FILE`, else Debian's), if there is one."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), IMAGE_CA_BUNDLE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@dataclass(frozen=True)
class Timed:
    name: str
    seconds: float


def build_command(
    engine: Engine,
    spec: ImageSpec,
    *,
    bases: dict[str, str] | None,
    platform: str | None,
    host_ca: Path | None = None,
    volumes: Sequence[str] = (),
) -> list[str]:
    """`build` arguments for one image: Docker syntax only; podman keeps HEALTHCHECK with `--format docker`.

    `host_ca` (podman) is mounted over the image's CA bundle during RUN steps only, never stored in a
    layer: networks that re-sign TLS (ours do, for containers) are then trusted by pip, uv and npm.
    """
    args = ["build", "-f", spec.dockerfile, "-t", spec.tag]
    if engine.name == "podman":
        args += ["--format", "docker"]
        if host_ca is not None:
            args += ["--volume", f"{host_ca}:{IMAGE_CA_BUNDLE}:ro"]
        for volume in volumes:
            args += ["--volume", volume]
    for arg, image in (bases or {}).items():
        args += ["--build-arg", f"{arg}={image}"]
    if platform is not None:
        args += ["--platform", platform]
    return [*args, spec.context]


def build_images(
    engine: Engine,
    *,
    names: Sequence[str] | None = None,
    local_base: bool = True,
    platform: str | None = None,
    tag_suffix: str = "",
    arch: str | None = None,
    volumes: Sequence[str] = (),
    work_dir: Path,
    report: Callable[[str], None],
) -> list[Timed]:
    """Build the bases (with `local_base`) and the images named (all by default); returns the timings.

    `volumes` (podman) are mounted during the images' build steps, e.g. an emulated CPU's /proc/cpuinfo.
    """
    chosen = [spec for spec in IMAGES if names is None or spec.name in names]
    timings: list[Timed] = []
    if local_base:
        started = time.monotonic()
        built = build_debian_image(engine, _suffixed(DEBIAN_BASE, tag_suffix), work_dir=work_dir, arch=arch)
        timings.append(
            Timed("debian root (debootstrap)" if built else "debian root (cached)", _since(started))
        )
        debian = {"DEBIAN_IMAGE": _suffixed(DEBIAN_BASE, tag_suffix)}
        for base_arg in dict.fromkeys(arg for spec in chosen for arg in spec.base_args):
            # No CA mount here: these install ca-certificates, whose postinst rewrites the bundle.
            timings.append(_build(engine, BASES[base_arg], debian, platform, tag_suffix, report, None))
    host_ca = host_ca_bundle()
    for spec in chosen:
        bases = {arg: _suffixed(BASES[arg].tag, tag_suffix) for arg in spec.base_args} if local_base else None
        timings.append(_build(engine, spec, bases, platform, tag_suffix, report, host_ca, volumes))
    return timings


def _build(
    engine: Engine,
    spec: ImageSpec,
    bases: dict[str, str] | None,
    platform: str | None,
    tag_suffix: str,
    report: Callable[[str], None],
    host_ca: Path | None,
    volumes: Sequence[str] = (),
) -> Timed:
    started = time.monotonic()
    tagged = replace(spec, tag=_suffixed(spec.tag, tag_suffix))
    report(f"== building {tagged.tag} ({spec.dockerfile})")
    command = build_command(engine, tagged, bases=bases, platform=platform, host_ca=host_ca, volumes=volumes)
    engine.run(command, timeout=1800, cwd=REPO_ROOT)
    timed = Timed(spec.name, _since(started))
    report(f"   {spec.name}: {timed.seconds:.0f} s")
    return timed


def _suffixed(tag: str, suffix: str) -> str:
    return f"{tag}{suffix}" if suffix else tag


def _since(started: float) -> float:
    return time.monotonic() - started
