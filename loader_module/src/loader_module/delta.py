"""The delta path's blocking steps (docs/delta.md): is a desired `Delta` usable here, and the exact target
ZIP rebuilt from it. Call them through `asyncio.to_thread`.

Nothing here fails an update: every reason a delta cannot be used is a `DeltaUnusableError`, after which
the service downloads the full ZIP. The rebuilt ZIP then goes through the same verify (digests and
signature), unpack and install as a downloaded one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from edge_shared.delta import FORMAT, ApplyResult, DeltaError, DeltaLimits, apply_delta
from edge_shared.desired import DeltaSpec, DesiredModel
from edge_shared.errors import RepositoryError
from edge_shared.repository import ModelManifest, ModelRepository
from loader_module.download import FLUSH_BYTES, DownloadResult
from loader_module.errors import ChecksumMismatchError, DeltaUnusableError
from loader_module.verify import verify_digests


@dataclass(frozen=True)
class RebuiltZip:
    """The rebuilt ZIP, shaped like a download (`fetched` = delta bytes downloaded), and how it was made."""

    result: DownloadResult
    applied: ApplyResult

    @property
    def bytes_saved(self) -> int:
        """What the delta saved on the link: the ZIP's size minus the whole delta file's."""
        return max(0, self.result.size - self.applied.delta_size)


def delta_part_path(repo: ModelRepository, key: str, delta: DeltaSpec) -> Path:
    """Named for the target and the delta's digest, so a restart resumes it and a new delta starts anew."""
    return repo.downloads_dir / f"{key}.delta-{delta.content_sha256[:16]}.part"


def rebuilt_zip_path(repo: ModelRepository, key: str) -> Path:
    return repo.downloads_dir / f"{key}.rebuilt.zip"


def usable_base(repo: ModelRepository, delta: DeltaSpec) -> ModelManifest:
    """The installed base's manifest, or why the delta cannot be used (checked before any download)."""
    if delta.format != FORMAT:
        raise DeltaUnusableError(f"unsupported delta Format {delta.format!r} (this loader applies {FORMAT})")
    if not repo.is_installed(delta.base_version):
        raise DeltaUnusableError(f"base version {delta.base_version!r} is not installed")
    try:
        return repo.read_manifest(delta.base_version)
    except RepositoryError as exc:
        raise DeltaUnusableError(f"base version {delta.base_version!r} has no readable manifest") from exc


def rebuild_zip(
    repo: ModelRepository,
    desired: DesiredModel,
    base: ModelManifest,
    delta_file: DownloadResult,
    out_zip: Path,
    *,
    max_output_bytes: int,
) -> RebuiltZip:
    """Check the delta file, apply it to the base folder, and check the rebuilt ZIP's digests against
    the desired ones (the signature is left to the common verify step, as for a download)."""
    delta = desired.delta
    assert delta is not None
    if not hmac.compare_digest(delta_file.sha256, bytes.fromhex(delta.content_sha256)):
        raise DeltaUnusableError("the delta file's SHA-256 differs from Delta.ContentSHA256")
    try:
        applied = apply_delta(
            delta_file.path,
            repo.version_dir(delta.base_version),
            out_zip,
            base_version=delta.base_version,
            base_files=base.files,
            expected_zip_sha256=desired.content_sha256,
            limits=DeltaLimits(max_output_bytes=max_output_bytes),
        )
        size, md5, sha256 = _hash_file(out_zip)
        verify_digests(desired, size=size, md5=md5, sha256=sha256)
    except (DeltaError, ChecksumMismatchError, OSError) as exc:
        with contextlib.suppress(FileNotFoundError):
            out_zip.unlink()
        raise DeltaUnusableError(f"{type(exc).__name__}: {exc}") from exc
    result = DownloadResult(out_zip, size, md5, sha256, delta_file.fetched, delta_file.attempts)
    return RebuiltZip(result, applied)


def _hash_file(path: Path) -> tuple[int, bytes, bytes]:
    """Size, MD5 and SHA-256 of the file as written (the checks read the bytes that will be unpacked)."""
    md5, sha256, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    with path.open("rb") as handle:
        while block := handle.read(FLUSH_BYTES):
            md5.update(block)
            sha256.update(block)
            size += len(block)
    return size, md5.digest(), sha256.digest()
