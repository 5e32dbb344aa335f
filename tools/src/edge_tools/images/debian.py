"""A minimal Debian bookworm image made with debootstrap from Debian's mirror: the root of our local
base images where no image registry can be reached.

The root file system is trimmed as Debian's slim images are (no manuals, documentation or translations,
now or in later `apt-get install`s) and imported as one layer. Its recipe hash is kept as a label, so
a second `make images` reuses it without running debootstrap again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edge_tools.images.engine import Engine, EngineError, run_command

logger = logging.getLogger(__name__)

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
RECIPE_LABEL = "org.edge-model-loader.recipe"
#: Applied before the import, so `apt-get install` in images built on it skips the same paths.
DPKG_SLIM = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""
APT_SLIM = """\
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
"""
_TRIMMED = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian")
_RECIPE_VERSION = "2"


def host_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The Debian mirror this machine's apt uses (its deb822 `URIs:`), or deb.debian.org."""
    try:
        text = sources.read_text(encoding="utf-8")
    except OSError:
        return DEFAULT_MIRROR
    for match in re.finditer(r"^URIs:\s*(\S+)", text, re.MULTILINE):
        uri = match.group(1).rstrip("/")
        if not uri.endswith("-security"):
            return uri
    return DEFAULT_MIRROR


def recipe_hash(mirror: str, arch: str | None = None) -> str:
    text = "\n".join([_RECIPE_VERSION, SUITE, mirror, arch or "host", DPKG_SLIM, APT_SLIM])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sources_list(mirror: str) -> str:
    security = mirror.removesuffix("/debian") + "/debian-security" if mirror.endswith("/debian") else None
    lines = [f"deb {mirror} {SUITE} main", f"deb {mirror} {SUITE}-updates main"]
    if security:
        lines.append(f"deb {security} {SUITE}-security main")
    return "\n".join(lines) + "\n"


def trim(root: Path, mirror: str) -> None:
    """Slim configuration, no documentation, no package caches, the mirror as the image's apt source."""
    (root / "etc/dpkg/dpkg.cfg.d/01-slim").write_text(DPKG_SLIM, encoding="utf-8")
    (root / "etc/apt/apt.conf.d/01-slim").write_text(APT_SLIM, encoding="utf-8")
    (root / "etc/apt/sources.list").write_text(sources_list(mirror), encoding="utf-8")
    for relative in _TRIMMED:
        folder = root / relative
        if folder.is_dir():
            # Licences stay (usr/share/doc/<package>/copyright), as in Debian's slim images.
            keep = {"copyright", "locale.alias"}
            for entry in sorted(folder.rglob("*"), key=lambda path: len(path.parts), reverse=True):
                if entry.is_dir() and not entry.is_symlink():
                    if not any(entry.iterdir()):
                        entry.rmdir()
                elif entry.name not in keep:
                    entry.unlink()
    for cache in (root / "var/cache/apt", root / "var/lib/apt/lists"):
        for entry in cache.rglob("*") if cache.is_dir() else []:
            if entry.is_file() and entry.name != "lock":
                entry.unlink()


def build_debian_image(
    engine: Engine, tag: str, *, work_dir: Path, mirror: str | None = None, arch: str | None = None
) -> bool:
    """Make `tag` unless an image with the same recipe exists; True when it was (re)built.

    `arch` (a Debian architecture such as arm64) makes a foreign root file system: debootstrap's second
    stage then runs under QEMU user emulation (binfmt_misc), which must be registered first.
    """
    mirror = mirror or host_mirror()
    recipe = recipe_hash(mirror, arch)
    if engine.image_label(tag, RECIPE_LABEL) == recipe:
        logger.info("%s is up to date (recipe %s)", tag, recipe)
        return False
    if shutil.which("debootstrap") is None:
        raise EngineError("debootstrap is not installed (Debian: apt-get install debootstrap)")
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=work_dir) as temp:
        root = Path(temp) / "rootfs"
        logger.info("debootstrap --variant=minbase %s from %s", SUITE, mirror)
        arch_args = [f"--arch={arch}"] if arch else []
        run_command(["debootstrap", "--variant=minbase", *arch_args, SUITE, str(root), mirror], timeout=2400)
        trim(root, mirror)
        _import(engine, root, tag, recipe, arch)
    return True


def _import(engine: Engine, root: Path, tag: str, recipe: str, arch: str | None) -> None:
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    arch_args = ["--arch", arch] if arch else []
    try:
        done = subprocess.run(
            [engine.name, "import", *arch_args, "--change", f"LABEL {RECIPE_LABEL}={recipe}", "--change",
             'CMD ["bash"]', "-", tag],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            env={**os.environ, **engine.env},
            timeout=600,
            check=False,
        )  # fmt: skip
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait(timeout=600)
    if done.returncode != 0 or tar.returncode != 0:
        raise EngineError(f"importing the root file system as {tag} failed: {done.stderr.strip()[-2000:]}")
