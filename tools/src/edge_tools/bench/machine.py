"""The machine a run measured: CPU, cores, memory, load, Python and the packages that shape the figures."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import threadpoolctl  # type: ignore[import-untyped]

PACKAGES = (
    "onnxruntime", "ai-edge-litert", "numpy", "pillow", "fastapi", "uvicorn",
    "uvloop", "httptools", "httpx", "azure-iot-device", "azure-storage-blob",
)  # fmt: skip
OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass(frozen=True, slots=True)
class Machine:
    cpu: str
    cores: int
    memory_gib: float
    python: str
    system: str
    packages: dict[str, str]
    blas: str
    openblas_env: dict[str, str]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _blas() -> str:
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl then reports)

    found = [
        f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture')} kernels, "
        f"{info.get('num_threads')} threads)"
        for info in threadpoolctl.threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return "; ".join(found) or "none found"


def describe() -> Machine:
    return Machine(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 0,
        memory_gib=_memory_gib(),
        python=sys.version.split()[0],
        system=f"{platform.system()} {platform.release()}",
        packages={name: _version(name) for name in PACKAGES},
        blas=_blas(),
        openblas_env={name: os.environ[name] for name in OPENBLAS_VARIABLES if name in os.environ},
    )


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
