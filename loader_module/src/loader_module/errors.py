"""Errors of the loader, one tree; each carries the stable `ErrorCode` it is reported as.

Tree:
    LoaderError                      base; `code` is what `ModelUpdate.error.code` says
    ├── TransientDownloadError       connection error, timeout, cut stream, 408/429/5xx: retried with backoff
    ├── DownloadFailedError          download_failed: attempts exhausted or an unexpected answer
    ├── SasExpiredError              sas_expired: 403 from storage; wait for a new desired URL
    ├── BlobNotFoundError            not_found: 404
    ├── TooLargeError                too_large: Size / Content-Length over LOADER_MAX_DOWNLOAD_BYTES
    ├── DiskFullError                disk_full: not enough free space (with the margin)
    ├── ChecksumMismatchError        checksum_mismatch: MD5, SHA-256 or size differ from the desired ones
    ├── SignatureInvalidError        signature_invalid: missing or not from a trusted key
    ├── SignatureUncheckedError      signature_unchecked: signed, but no LOADER_TRUSTED_KEYS to check it
    ├── UnsafeArchiveError           unsafe_archive: `..`, absolute path, symlink, too many members/bytes
    ├── InvalidModelError            invalid_model: not one model file, two label files, bad labels, bad magic
    ├── InstallFailedError           install_failed: the repository could not be updated
    └── RollbackFailedError          rollback_failed: no such version or nothing to roll back to
Outside the tree:
    DeltaUnusableError               why a desired `Delta` cannot be used; never reported as a failure:
                                     the full `DownloadUrl` is downloaded instead, in the same update
Messages never contain a URL query (SAS token): callers pass redacted URLs only.
"""

from __future__ import annotations

from edge_shared.reported import ErrorCode


class LoaderError(Exception):
    """Base of every loader error."""

    code: ErrorCode = ErrorCode.INTERNAL
    #: True when trying the same desired state later may succeed (a scheduled retry is worth it).
    retry_later: bool = False


class TransientDownloadError(LoaderError):
    """A failure worth retrying at once (after backoff); `retry_after` honours the server's hint."""

    code = ErrorCode.DOWNLOAD_FAILED
    retry_later = True

    def __init__(self, message: str, *, retry_after: float | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        #: For the device log only: what the reported message leaves out (see `download.NETWORK_ERROR`).
        self.detail = detail


class DownloadFailedError(LoaderError):
    code = ErrorCode.DOWNLOAD_FAILED
    retry_later = True


class SasExpiredError(LoaderError):
    code = ErrorCode.SAS_EXPIRED


class BlobNotFoundError(LoaderError):
    code = ErrorCode.NOT_FOUND


class TooLargeError(LoaderError):
    code = ErrorCode.TOO_LARGE


class DiskFullError(LoaderError):
    code = ErrorCode.DISK_FULL
    retry_later = True


class ChecksumMismatchError(LoaderError):
    code = ErrorCode.CHECKSUM_MISMATCH


class SignatureInvalidError(LoaderError):
    code = ErrorCode.SIGNATURE_INVALID


class SignatureUncheckedError(LoaderError):
    """Refused before the download; retried later, since the cure is a setting (keys), not new bytes."""

    code = ErrorCode.SIGNATURE_UNCHECKED
    retry_later = True


class UnsafeArchiveError(LoaderError):
    code = ErrorCode.UNSAFE_ARCHIVE


class InvalidModelError(LoaderError):
    code = ErrorCode.INVALID_MODEL


class InstallFailedError(LoaderError):
    code = ErrorCode.INSTALL_FAILED


class RollbackFailedError(LoaderError):
    code = ErrorCode.ROLLBACK_FAILED


class DeltaUnusableError(Exception):
    """A desired `Delta` cannot be used (format, base, download, patch, digest): the full ZIP is fetched."""
