"""How much memory this process could still take: the host's `MemAvailable`, capped by a cgroup v2 limit."""

from __future__ import annotations

import logging
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
