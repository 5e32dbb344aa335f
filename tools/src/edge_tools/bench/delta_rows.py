"""Delta figures on a ~35 MB model with the fixtures' interface (docs/delta.md).

    python -m edge_tools.bench.delta_rows [--repeat 3] [--json OUT] [--deflate-options]

The model is the tiny-YOLOv3-interface fixture (`build_yolo_onnx("v1")`) plus initializers shaped like
tiny-YOLOv3's 13 convolutions (8.85 M float32 parameters, He-normal, fixed seed). For each change the
script builds both ZIPs as `edge-model publish <folder>` packs them (the model member in independent
deflate chunks, `edge_tools.publish.zipwriter`), times `make_delta`, then applies the delta in a fresh
process per repetition (time, the share of it spent re-deflating, peak RSS above the process's baseline)
and checks the rebuilt ZIP is byte-identical. Shares are of the new deflated ZIP. Two extra rows repeat
the full fine-tune with ZIPs from elsewhere: one level-6 stream per member, as `zipfile` writes, and the
model stored. Section 7 of `make bench` (`edge_tools.bench.delta`) runs the same rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

from edge_shared.delta.deflate import DeflateSettings, deflate_pieces
from edge_tools.delta.produce import make_delta
from edge_tools.delta.zipscan import read_files
from edge_tools.fixtures import build_yolo_onnx, coco_labels_text, make_model_zip
from edge_tools.publish.zipwriter import PACK_CHUNK, ZipEntry, write_zip

# tiny-YOLOv3's convolutions: (out, in, k). The last one is the detection head.
_LAYERS = ((16, 3, 3), (32, 16, 3), (64, 32, 3), (128, 64, 3), (256, 128, 3), (512, 256, 3),
           (1024, 512, 3), (256, 1024, 1), (512, 256, 3), (255, 512, 1), (128, 256, 1),
           (256, 384, 3), (255, 256, 1))  # fmt: skip
SEED = 20261125

Weights = dict[str, npt.NDArray[np.float32]]


def base_weights(seed: int = SEED, layers: int = len(_LAYERS)) -> Weights:
    """tiny-YOLOv3's first `layers` convolutions (all 13: the ~35 MB bench model; fewer: a quick check)."""
    rng = np.random.default_rng(seed)
    weights: Weights = {}
    for index, (out, inp, k) in enumerate(_LAYERS[:layers]):
        scale = np.sqrt(2.0 / (inp * k * k))
        weights[f"backbone_conv_{index}_w"] = (rng.standard_normal((out, inp, k, k)) * scale).astype(
            np.float32
        )
        weights[f"backbone_conv_{index}_b"] = (rng.standard_normal(out) * 0.01).astype(np.float32)
    return weights


def build_model(weights: Weights) -> bytes:
    model = onnx.load_from_string(build_yolo_onnx("v1"))
    for name, value in weights.items():
        model.graph.initializer.append(numpy_helper.from_array(value, name=name))
    return bytes(model.SerializeToString())


def _fine_tune(weights: Weights, names: list[str], relative: float, seed: int) -> Weights:
    rng = np.random.default_rng(seed)
    out = dict(weights)
    for name in names:
        value = weights[name]
        out[name] = (value * (1 + relative * rng.standard_normal(value.shape))).astype(np.float32)
    return out


Scenario = Callable[[Weights], tuple[Weights, str]]


def scenarios(layers: int = len(_LAYERS)) -> dict[str, Scenario]:
    """Change name → (new weights, new labels) from the base weights of `layers` convolutions."""
    labels = coco_labels_text()
    last = layers - 1
    head = [f"backbone_conv_{last}_w", f"backbone_conv_{last}_b"]
    two = [*head, f"backbone_conv_{last - 1}_w", f"backbone_conv_{last - 1}_b"]
    return {
        "head fine-tune (last layer, relative change 1e-2)": lambda w: (_fine_tune(w, head, 1e-2, 1), labels),
        "last two layers (relative change 1e-2)": lambda w: (_fine_tune(w, two, 1e-2, 2), labels),
        FINE_TUNE_ROW: lambda w: (_fine_tune(w, list(w), 1e-3, 3), labels),
        "label file only": lambda w: (w, labels.replace("person", "human", 1)),
        "full retrain (new random weights)": lambda _: (base_weights(SEED + 1, layers), labels),
    }


Packing = Literal["publish", "zipfile", "stored"]
FINE_TUNE_ROW = "full fine-tune (relative change 1e-3)"
#: Extra rows: the same full fine-tune with both ZIPs written another way, to show what the exact-ZIP
#: rebuild's deflate pass costs on the device.
EXTRA_ROWS: dict[str, Packing] = {
    "full fine-tune 1e-3, ZIPs by Python's zipfile (one level-6 stream per member)": "zipfile",
    "full fine-tune 1e-3, model stored (not deflated) in the ZIPs": "stored",
}


@dataclass(frozen=True, slots=True)
class DeltaBenchOptions:
    """`repeat` applies per change, on a model of tiny-YOLOv3's first `layers` convolutions."""

    repeat: int = 3
    layers: int = len(_LAYERS)


@dataclass
class Row:
    change: str
    zip_bytes: int
    delta_bytes: int
    share: float
    decision: str
    kinds: str
    diff_seconds: float
    apply_seconds: list[float]
    deflate_seconds: list[float]
    apply_peak_mb: float
    model_mb: float


def _zip(model: bytes, labels: str, packing: Packing) -> bytes:
    if packing == "zipfile":
        return make_model_zip(model, "model.onnx", labels, "coco_classes.txt")
    entries = [
        ZipEntry("model.onnx", model, deflate=packing == "publish"),
        ZipEntry("coco_classes.txt", labels.encode("utf-8")),
    ]
    return write_zip(entries)


def run(options: DeltaBenchOptions, work: Path) -> list[Row]:
    """Every change's row: delta size and decision, diff time, apply time and peak in fresh processes."""
    repeat, layers = options.repeat, options.layers
    weights = base_weights(layers=layers)
    base_model = build_model(weights)
    base_zip = _zip(base_model, coco_labels_text(), "publish")
    base_dir = work / "base"
    base_dir.mkdir()
    for name, data in read_files(base_zip).items():
        (base_dir / name).write_bytes(data)
    rows = []
    cases: list[tuple[str, Scenario, Packing]] = [
        (change, make, "publish") for change, make in scenarios(layers).items()
    ]
    cases += [(change, scenarios(layers)[FINE_TUNE_ROW], packing) for change, packing in EXTRA_ROWS.items()]
    for change, make, packing in cases:
        new_weights, labels = make(weights)
        target_zip = _zip(build_model(new_weights), labels, packing)
        start = time.perf_counter()
        build = make_delta(base_zip, target_zip, base_version="1", target_version="2")
        diff_seconds = time.perf_counter() - start
        delta_path = work / "delta.emd"
        delta_path.write_bytes(build.delta)
        expected = hashlib.sha256(target_zip).hexdigest()
        times, deflates, peaks = [], [], []
        for _ in range(repeat):
            measured = _apply_in_subprocess(delta_path, base_dir, work / "out.zip", expected)
            times.append(measured.seconds)
            deflates.append(measured.deflate_seconds)
            peaks.append(measured.peak_mb)
        rows.append(
            Row(
                change=change,
                zip_bytes=len(target_zip),
                delta_bytes=len(build.delta),
                share=build.ratio,
                decision=build.decision,
                kinds=", ".join(f"{f.name}: {f.kind}" for f in build.files),
                diff_seconds=diff_seconds,
                apply_seconds=times,
                deflate_seconds=deflates,
                apply_peak_mb=max(peaks),
                model_mb=len(base_model) / 1e6,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class ApplyMeasurement:
    """One `apply_delta` in a fresh process."""

    seconds: float
    deflate_seconds: float
    peak_mb: float
    """Peak RSS above the process's baseline after its imports."""


def _apply_in_subprocess(delta: Path, base_dir: Path, out: Path, expected: str) -> ApplyMeasurement:
    command = [
        sys.executable,
        "-m",
        "edge_tools.bench.delta_rows",
        "--apply-one",
        str(delta),
        str(base_dir),
        str(out),
        expected,
    ]
    result = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    return ApplyMeasurement(**json.loads(result.stdout))


def _apply_one(delta: Path, base_dir: Path, out: Path, expected: str) -> ApplyMeasurement:
    """Apply once in this (fresh) process: wall time and peak RSS above the post-import baseline."""
    from edge_shared.delta import apply_delta

    # Reset the kernel's high-water mark so the imports' own peak does not hide the apply's.
    Path("/proc/self/clear_refs").write_text("5")
    baseline = _status_kib("VmRSS")
    start = time.perf_counter()
    result = apply_delta(delta, base_dir, out, expected_zip_sha256=expected)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    if hashlib.sha256(out.read_bytes()).hexdigest() != expected or result.zip_sha256 != expected:
        raise SystemExit("rebuilt ZIP differs from the target")
    return ApplyMeasurement(seconds, result.deflate_seconds, (peak - baseline) * 1024 / 1e6)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def markdown(rows: list[Row]) -> str:
    lines = [
        "| change | new ZIP | delta | share of ZIP | shipped | per file | diff s "
        "| apply s min/med/max | of which re-deflate (med) | apply peak MB (× model) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r.apply_seconds
        lines.append(
            f"| {r.change} | {r.zip_bytes / 1e6:.2f} MB | {_bytes(r.delta_bytes)} | {100 * r.share:.2f} % | "
            f"{r.decision} | {r.kinds} | {r.diff_seconds:.1f} | "
            f"{min(t):.2f} / {statistics.median(t):.2f} / {max(t):.2f} | "
            f"{statistics.median(r.deflate_seconds):.2f} | "
            f"{r.apply_peak_mb:.0f} ({r.apply_peak_mb / r.model_mb:.1f}×) |"
        )
    return "\n".join(lines)


def deflate_options(model: bytes) -> str:
    """Size and time of the deflate settings a rebuild could use, on `model` (docs/delta.md's table)."""
    chunk = PACK_CHUNK
    options = [
        ("one stream, level 6, default strategy (zipfile, Info-ZIP)", DeflateSettings(), 1),
        ("one stream, level 1", DeflateSettings(level=1), 1),
        ("one stream, Huffman only", DeflateSettings(strategy=zlib.Z_HUFFMAN_ONLY), 1),
        ("one stream, RLE", DeflateSettings(strategy=zlib.Z_RLE), 1),
        ("1 MiB chunks, default strategy, 1 thread", DeflateSettings(chunk_size=chunk), 1),
        ("1 MiB chunks, default strategy, 2 threads", DeflateSettings(chunk_size=chunk), 2),
        ("1 MiB chunks, RLE, 1 thread", DeflateSettings(strategy=zlib.Z_RLE, chunk_size=chunk), 1),
        (
            "1 MiB chunks, RLE, 2 threads (publish, loader)",
            DeflateSettings(strategy=zlib.Z_RLE, chunk_size=chunk),
            2,
        ),
    ]
    lines = ["| deflate of the model | size / input | time |", "|---|---|---|"]
    for name, settings, threads in options:
        start = time.perf_counter()
        size = sum(len(piece) for piece in deflate_pieces(model, settings, threads))
        lines.append(f"| {name} | {size / len(model):.4f} | {time.perf_counter() - start:.2f} s |")
    return "\n".join(lines)


def _bytes(n: int) -> str:
    return f"{n} B" if n < 10_000 else f"{n / 1e6:.2f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_tools.bench.delta_rows",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--repeat", type=int, default=DeltaBenchOptions().repeat, help="applies per change")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument(
        "--apply-one", nargs=4, metavar=("DELTA", "BASE_DIR", "OUT", "SHA256"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--deflate-options", action="store_true", help="only time deflate settings on the model"
    )
    args = parser.parse_args(argv)
    if args.deflate_options:
        sys.stdout.write(deflate_options(build_model(base_weights())) + "\n")
        return 0
    if args.apply_one:
        delta, base_dir, out, expected = args.apply_one
        measured = _apply_one(Path(delta), Path(base_dir), Path(out), expected)
        sys.stdout.write(json.dumps(asdict(measured)) + "\n")
        return 0
    with tempfile.TemporaryDirectory(prefix="delta-bench-") as tmp:
        rows = run(DeltaBenchOptions(repeat=args.repeat), Path(tmp))
    sys.stdout.write(markdown(rows) + "\n")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
