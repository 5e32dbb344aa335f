"""Delta figures through `edge_tools.bench.delta_rows` on the ~35 MB tiny-YOLOv3-shaped model."""

from __future__ import annotations

import statistics
from pathlib import Path

from edge_tools.bench.delta_rows import EXTRA_ROWS, DeltaBenchOptions
from edge_tools.bench.delta_rows import run as run_delta
from edge_tools.bench.profile import Profile
from edge_tools.bench.results import SectionResult

#: change (a row of the delta bench) → largest share of the new ZIP the delta may take.
SHARE_GOALS = {
    "head fine-tune (last layer, relative change 1e-2)": 0.05,
    "last two layers (relative change 1e-2)": 0.12,
    "full fine-tune (relative change 1e-3)": 0.60,
}
LABELS_ROW = "label file only"
RETRAIN_ROW = "full retrain (new random weights)"


def run(profile: Profile, work: Path) -> SectionResult:
    repeat = max(2, min(profile.rounds, 3))
    section = SectionResult(
        key="delta",
        title="Delta updates",
        setup=(
            "`edge_tools.bench.delta_rows`: the tiny-YOLOv3-interface fixture plus initializers shaped like "
            "tiny-YOLOv3's 13 convolutions (35.5 MB ONNX, deflated ZIP ~32.9 MB), packed as "
            "`edge-model publish <folder>` packs it (model in independent 1 MiB deflate chunks); the last "
            "rows repeat the full fine-tune with ZIPs written elsewhere. Share = delta / new ZIP; "
            f"apply = `apply_delta` in a fresh process, {repeat} runs, checked byte-identical; peak = RSS "
            "high-water mark above the process's baseline."
        ),
    )
    work.mkdir(parents=True, exist_ok=True)
    rows = run_delta(DeltaBenchOptions(repeat=repeat), work)
    for row in rows:
        section.figure(f"{row.change}: delta / new ZIP ({row.decision})", "%", [100 * row.share], 2)
        section.figure(f"{row.change}: diff (`make_delta`, publisher side)", "s", [row.diff_seconds], 2)
        section.figure(f"{row.change}: apply", "s", row.apply_seconds, 2)
        section.figure(f"{row.change}: of which re-deflate", "s", row.deflate_seconds, 2)
        section.figure(f"{row.change}: apply peak / model size", "×", [row.apply_peak_mb / row.model_mb], 2)
    by_change = {row.change: row for row in rows}
    for change, limit in SHARE_GOALS.items():
        share = by_change[change].share
        section.goal(f"{change}: share", f"≤ {limit:.0%}", f"{share:.2%}", share <= limit, "")
    labels = by_change[LABELS_ROW]
    section.goal("label-only delta", "≤ 4 KB", f"{labels.delta_bytes} B", labels.delta_bytes <= 4096)
    retrain = by_change[RETRAIN_ROW]
    section.goal("full retrain ships the full ZIP", "full", retrain.decision, retrain.decision == "full")
    peak = max(row.apply_peak_mb / row.model_mb for row in rows)
    section.goal("apply memory", "≤ 2.5× the model", f"{peak:.1f}×", peak <= 2.5, "")
    published = [row for row in rows if row.change not in EXTRA_ROWS and row.decision == "delta"]
    worst = max(published, key=lambda row: statistics.median(row.apply_seconds))
    apply_median = statistics.median(worst.apply_seconds)
    section.goal(
        "apply time (ZIP from `edge-model publish`)", "< 1 s",
        f"{apply_median:.2f} s (slowest change, median)",
        apply_median < 1.0,
        f"of which re-deflating the model {statistics.median(worst.deflate_seconds):.2f} s; "
        + "; ".join(
            f"{change}: {statistics.median(by_change[change].apply_seconds):.2f} s" for change in EXTRA_ROWS
        ),
    )  # fmt: skip
    return section
