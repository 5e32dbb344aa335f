"""Opening model-folder files safely: regular files only.

Opening a FIFO for reading blocks until a writer appears (for ever, on a read-only volume), and a
device such as `/dev/zero` never ends; either would hang a load while it holds the swap lock. Files are
opened non-blocking, checked with `fstat` on the open descriptor (no race with a rename), and only a
regular file is read.
"""

from __future__ import annotations

import os
import stat
from io import BufferedReader
from pathlib import Path

from inference_module.errors import ModelLoadError


class NotRegularFileError(ModelLoadError):
    """A FIFO, device, socket or directory where a model-folder file should be."""


def open_regular(path: Path) -> BufferedReader:
    """`path` opened for binary reading; `NotRegularFileError` if it is not a regular file.

    `OSError` (missing, unreadable) is left to the caller, which knows what the file is for.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(f"{path.name} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def require_regular(path: Path) -> None:
    """Refuse `path` if it exists and is not a regular file (before a library opens it by name)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ModelLoadError(f"{path.name} cannot be read: {exc.__class__.__name__}") from exc
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(f"{path.name} is not a regular file")


def read_regular(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of a regular file; `ModelLoadError` when it is larger."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ModelLoadError(f"{path.name} is larger than {limit} bytes")
    return data
