"""How much memory this process could still take: the host's `MemAvailable`, capped by a cgroup v2 limit."""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")


def available_memory_bytes(meminfo: Path = MEMINFO, cgroup: Path = CGROUP) -> int | None:
    """Bytes available, or None when it cannot be told (the check is then skipped)."""
    candidates = [
        value for value in (_meminfo_available(meminfo), _cgroup_headroom(cgroup)) if value is not None
    ]
    return min(candidates) if candidates else None


def _meminfo_available(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        logger.warning("cannot read MemAvailable from %s", meminfo)
    return None


def _cgroup_headroom(cgroup: Path) -> int | None:
    """In a container, the limit that the kernel will enforce on us (cgroup v2 only)."""
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int((cgroup / "memory.current").read_text().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None  # no cgroup v2 memory controller here: the host figure applies


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None elsewhere (musl, macOS)."""
    try:
        function: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return function


def give_back_memory() -> bool:
    """Return freed heap pages to the system after a large image.

    glibc keeps freed memory in its per-thread arenas (and raises its mmap threshold after big frees),
    so a few large decodes left the process hundreds of MB bigger for good. True when trimmed.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def rss_bytes(statm: Path = Path("/proc/self/statm")) -> int | None:
    """Resident memory of this process, or None where /proc is missing."""
    try:
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
