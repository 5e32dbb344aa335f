"""Load one model in a fresh interpreter: load time and resident memory it adds, as JSON on stdout.

`python -m edge_tools.bench.model_memory MODEL LABELS RUNTIME` (spawned by the swap, update and cold-start
sections): "model load alone" is the swap's build step (hash, labels, session, warm-up) after the imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edge_tools.bench.label_arg import label_arg, label_path


@dataclass(frozen=True, slots=True)
class ModelCost:
    load_seconds: float
    rss_added_mib: float
    import_seconds: float


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmRSS")


def _measure(model: Path, labels: Path | None, runtime: str) -> dict[str, float]:
    started = time.perf_counter()
    from edge_tools.bench.in_process import load_model
    from inference_module.service import file_sha256

    imported = time.perf_counter()
    before = _rss_kib()
    begin = time.perf_counter()
    file_sha256(model)
    loaded = load_model(model, labels, runtime)
    seconds = time.perf_counter() - begin
    after = _rss_kib()
    loaded.close()
    return {
        "load_seconds": seconds,
        "rss_added_mib": (after - before) / 1024,
        "import_seconds": imported - started,
    }


def measure(model: Path, labels: Path | None, runtime: str) -> ModelCost:
    """Spawn a fresh interpreter and measure there, so nothing this process loaded counts."""
    command = [sys.executable, "-m", "edge_tools.bench.model_memory", str(model), label_arg(labels), runtime]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    values = json.loads(done.stdout.strip().splitlines()[-1])
    return ModelCost(values["load_seconds"], values["rss_added_mib"], values["import_seconds"])


def main(argv: list[str]) -> int:
    model, labels, runtime = argv
    sys.stdout.write(json.dumps(_measure(Path(model), label_path(labels), runtime)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
