"""`publish --delta-from`: find the base package, build the delta, check it applies, keep a local cache.

Every published ZIP is kept in the cache folder (`<cache>/<version>.zip`) so the next publish can diff
against it without a download; a version missing there is fetched from Blob Storage by the version
recorded in the blob's metadata. A delta is checked by applying it to the base's files, exactly as a
device would, before anything is uploaded: a delta that does not rebuild the ZIP is never published.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge_shared.delta import DeltaError, apply_delta
from edge_shared.fsutil import atomic_write_bytes
from edge_shared.names import check_version
from edge_tools.delta import DeltaBuild, make_delta
from edge_tools.delta.zipscan import ZipScanError, read_files
from edge_tools.publish.package import ModelPackage

logger = logging.getLogger(__name__)


class DeltaPublishError(RuntimeError):
    """The delta cannot be built (no base package found, or it does not rebuild the target)."""


def default_cache_dir() -> Path:
    """`$EDGE_MODEL_CACHE_DIR`, else `$XDG_CACHE_HOME/edge-model`, else `~/.cache/edge-model`."""
    explicit = os.environ.get("EDGE_MODEL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edge-model"


def cache_path(cache_dir: Path, version: str) -> Path:
    return cache_dir / f"{check_version(version)}.zip"


def cache_package(cache_dir: Path, version: str, package: ModelPackage) -> Path:
    """Keep a published ZIP for later deltas (atomic write)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_path(cache_dir, version)
    atomic_write_bytes(path, package.data)
    return path


@dataclass(frozen=True)
class VerifiedDelta:
    build: DeltaBuild
    sha256_hex: str
    file_name: str


def delta_file_name(target_file_name: str, base_version: str) -> str:
    """`<target name without .zip>.from-<base>.emdelta`, next to the ZIP in the container."""
    stem = target_file_name[:-4] if target_file_name.lower().endswith(".zip") else target_file_name
    return f"{stem}.from-{check_version(base_version)}.emdelta"


def build_verified_delta(
    base_zip: bytes, package: ModelPackage, *, base_version: str, version: str
) -> VerifiedDelta:
    """Build the delta and apply it to the base's files in a scratch folder; it must rebuild the ZIP."""
    try:
        build = make_delta(base_zip, package.data, base_version=base_version, target_version=version)
    except ZipScanError as exc:
        raise DeltaPublishError(f"cannot diff against base {base_version!r}: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="edge-model-delta-") as tmp:
        base_dir = Path(tmp, "base")
        base_dir.mkdir()
        for name, data in read_files(base_zip).items():
            target = base_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        delta_path = Path(tmp, "delta.emdelta")
        delta_path.write_bytes(build.delta)
        try:
            apply_delta(
                delta_path, base_dir, Path(tmp, "rebuilt.zip"), base_version=base_version,
                expected_zip_sha256=package.sha256_hex,
            )  # fmt: skip
        except DeltaError as exc:
            raise DeltaPublishError(f"the delta does not rebuild the package: {exc}") from exc
    return VerifiedDelta(
        build, hashlib.sha256(build.delta).hexdigest(), delta_file_name(package.file_name, base_version)
    )
