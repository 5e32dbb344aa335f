"""The one mapping from exceptions to reported failures: codes, retry, and messages safe to report."""

from __future__ import annotations

import errno

import pytest

from edge_shared.errors import RepositoryError
from edge_shared.reported import ErrorCode
from loader_module.errors import DiskFullError, UnsafeArchiveError
from loader_module.failures import classify, reportable


def test_loader_errors_keep_their_code_and_retry_decision() -> None:
    assert classify(DiskFullError("full")) == classify(DiskFullError("full"))
    disk = classify(DiskFullError("the volume is full"))
    assert (disk.code, disk.retry_later) == (ErrorCode.DISK_FULL, True)
    unsafe = classify(UnsafeArchiveError("member 'a' is both a file and a folder"))
    assert (unsafe.code, unsafe.retry_later) == (ErrorCode.UNSAFE_ARCHIVE, False)


def test_os_errors_report_the_reason_without_the_file_name() -> None:
    failure = classify(IsADirectoryError(errno.EISDIR, "Is a directory", "/models/.staging/unpack-x1/a"))
    assert failure == classify(OSError(errno.EISDIR, "Is a directory"))
    assert failure.code == ErrorCode.INSTALL_FAILED and failure.retry_later
    assert failure.message == "file-system error: Is a directory"


@pytest.mark.parametrize(
    "exc", [RuntimeError("boom /var/lib/x/y"), KeyError("k"), ValueError("Port out of range")]
)
def test_anything_unexpected_is_an_internal_error_retried_later(exc: Exception) -> None:
    failure = classify(exc)
    assert failure.code == ErrorCode.INTERNAL and failure.retry_later
    assert type(exc).__name__ in failure.message and "/var/lib" not in failure.message


def test_repository_errors_are_install_failed_and_retried() -> None:
    failure = classify(RepositoryError("the `current` file does not name a valid version"))
    assert failure.code == ErrorCode.INSTALL_FAILED and failure.retry_later


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("could not move '/models/.staging/unpack-abc/a' aside", "could not move '<path>' aside"),
        ("[Errno 2] No such file: /tmp/pytest-1/models-volume/x.part", "[Errno 2] No such file: <path>"),
        (
            "403 from https://acct.blob.core.windows.net/models/v1.zip?sig=SECRET",
            "403 from https://acct.blob.core.windows.net/models/v1.zip?<redacted>",
        ),
        ("member 'tiny/a/b' is both a file and a folder", "member 'tiny/a/b' is both a file and a folder"),
        ("downloaded 10 bytes but Size says 1000", "downloaded 10 bytes but Size says 1000"),
    ],
)
def test_reportable_messages_hide_device_paths_and_sas_but_keep_urls_and_member_names(
    message: str, expected: str
) -> None:
    assert reportable(message) == expected
