"""What a failed update reports: the one place that turns any exception into a code, a message that is
safe to show outside the device, and whether a later retry is scheduled.

Reported messages reach the twin, which more people read than the device log: they never carry a URL
query (SAS), a device path (the model volume's layout is nobody's business and differs per device), nor
the low-level text of a network error (which tells a port that refuses from one that speaks no TLS,
see `download.NETWORK_ERROR`). The full detail goes to the device log only.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass

from edge_shared.errors import RepositoryError
from edge_shared.redaction import redact
from edge_shared.reported import ErrorCode
from loader_module.errors import LoaderError

#: An absolute POSIX path of two or more parts that is not part of a URL (`host/path` has a word
#: character or `:` before its `/`, `//` of a scheme a `/` or `:`).
_DEVICE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"<>]+/)+[^\s/'\"<>,;)]*")
DEVICE_PATH = "<path>"


@dataclass(frozen=True)
class Failure:
    code: ErrorCode
    #: Safe to report (see the module docstring).
    message: str
    #: True when the same desired state is tried again at `nextRetryAt`.
    retry_later: bool


def classify(exc: Exception) -> Failure:
    """The failure an exception from an update step stands for. Anything unexpected is a reported
    `internal_error` retried later, never a silently dead update."""
    if isinstance(exc, LoaderError):
        return Failure(exc.code, reportable(str(exc)), exc.retry_later)
    if isinstance(exc, OSError):
        # `str(OSError)` names the file; the reason is what an operator can act on.
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        return Failure(ErrorCode.INSTALL_FAILED, f"file-system error: {reason}", True)
    if isinstance(exc, RepositoryError):
        return Failure(ErrorCode.INSTALL_FAILED, reportable(str(exc)), True)
    return Failure(
        ErrorCode.INTERNAL,
        f"unexpected {type(exc).__name__} in the loader (details in the device log)",
        True,
    )


def reportable(message: str) -> str:
    """`message` without credentials or device paths."""
    return _DEVICE_PATH.sub(DEVICE_PATH, redact(message))
