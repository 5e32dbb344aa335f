"""The container engine: podman (from Debian) where there is no Docker daemon, or Docker.

Only command lines differ between the two; the Dockerfiles and the compose file are plain Docker syntax.
Podman is configured through a `containers.conf` of our own (`CONTAINERS_CONF`), never by editing
`/etc`: runc (crun refuses a cgroup v1/hybrid host), cgroupfs (no systemd), file events and fixed
ulimits (root in a sandbox may not raise RLIMIT_NOFILE, which podman's default asks for).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

EngineName = Literal["podman", "docker"]
PODMAN_PACKAGES = ("podman", "buildah", "runc", "debootstrap")
CONTAINERS_CONF = """\
# Written by `make images` (edge_tools.images.engine); podman reads it through CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class EngineError(RuntimeError):
    """An engine command failed; the message ends with the tail of its output."""


@dataclass(frozen=True)
class Engine:
    """One engine's command lines, run with the environment it needs."""

    name: EngineName
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def compose(self) -> list[str]:
        # podman-compose (PyPI) honours the compose file as Docker does, except healthchecks and
        # `depends_on` conditions, which the compose test does itself.
        if self.name == "docker":
            return ["docker", "compose"]
        beside = Path(sys.executable).parent / "podman-compose"  # the project's venv, even off PATH
        return [str(beside) if beside.is_file() else "podman-compose"]

    @property
    def runs_healthchecks(self) -> bool:
        """Docker runs HEALTHCHECKs itself; podman only with systemd timers, so we run them."""
        return self.name == "docker"

    def run(
        self,
        args: Sequence[str],
        *,
        timeout: float,
        check: bool = True,
        quiet: bool = True,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run_command(
            [self.name, *args], env=self.env, timeout=timeout, check=check, quiet=quiet, cwd=cwd
        )

    def image_label(self, tag: str, label: str) -> str | None:
        done = self.run(
            ["image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', tag],
            timeout=60,
            check=False,
        )
        value = done.stdout.strip()
        return value if done.returncode == 0 and value and value != "<no value>" else None


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float,
    check: bool = True,
    quiet: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` with a time limit; `quiet` keeps its output for the error instead of printing it."""
    full_env = {**os.environ, **(env or {})}
    started = time.monotonic()
    try:
        done = subprocess.run(
            list(argv),
            env=full_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=quiet,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{' '.join(argv[:4])} ... did not finish within {timeout:.0f} s") from exc
    except FileNotFoundError as exc:
        raise EngineError(f"{argv[0]} is not installed") from exc
    logger.debug("%s took %.1f s", argv[:3], time.monotonic() - started)
    if check and done.returncode != 0:
        output = ((done.stdout or "") + (done.stderr or "")).strip().splitlines()
        tail = "\n".join(f"    {line}" for line in output[-25:])
        raise EngineError(f"{' '.join(argv[:6])} ... exited {done.returncode}\n{tail}")
    return done


def podman_config(build_dir: Path) -> dict[str, str]:
    """Write our `containers.conf` under `build_dir` and return the environment pointing at it."""
    path = build_dir / "containers" / "containers.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != CONTAINERS_CONF:
        path.write_text(CONTAINERS_CONF, encoding="utf-8")
    return {"CONTAINERS_CONF": str(path.resolve())}


def ensure_podman() -> None:
    """Install podman, buildah, runc and debootstrap from Debian when missing (root only)."""
    missing = [tool for tool in PODMAN_PACKAGES if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        packages = " ".join(PODMAN_PACKAGES)
        raise EngineError(f"{', '.join(missing)} missing: install them (Debian: apt-get install {packages})")
    logger.info("installing %s from Debian", " ".join(PODMAN_PACKAGES))
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run_command(["apt-get", "update", "-qq"], env=env, timeout=600)
    run_command(["apt-get", "install", "-y", "-qq", *PODMAN_PACKAGES], env=env, timeout=900)


def docker_works() -> bool:
    """A Docker client alone is not enough: the daemon must answer."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def select_engine(requested: str | None, build_dir: Path) -> Engine:
    """`requested` ("podman"/"docker"), else Docker when its daemon answers, else podman (installed)."""
    if requested not in (None, "", "podman", "docker"):
        raise EngineError(f"unknown container engine {requested!r}: podman or docker")
    if requested == "docker" or (not requested and docker_works()):
        return Engine("docker")
    ensure_podman()
    return Engine("podman", podman_config(build_dir))
