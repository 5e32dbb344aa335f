"""Download benchmark: the loader's `Downloader` fetching a large blob from Azurite over HTTPS on loopback.

`python -m edge_tools.bench_download [--mib 256] [--runs 3]` uploads a random blob, then downloads it in
a fresh interpreter per run (so peak RSS is the download's own) in four modes: a baseline of plain httpx
streaming (no hashing, no file), the loader direct, through the fault proxy without a fault (the proxy's
own cost), and through the proxy with a cut at half the blob (resume with Range + If-Match). Prints a
Markdown table: MiB/s and peak RSS (VmHWM), min / median / max.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from edge_tools.azurite import Azurite
from edge_tools.faultproxy import FaultProxy, Policy

MiB = 1024 * 1024


def _vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _raw_child(url: str, ca_file: str) -> dict[str, float]:
    """Baseline: plain httpx streaming to nowhere (no hashing, no file, no resume bookkeeping)."""
    baseline = _vm_hwm_mib()
    context = ssl.create_default_context(cafile=ca_file)
    size = 0
    async with httpx.AsyncClient(verify=context, timeout=httpx.Timeout(30.0)) as client:
        started = time.perf_counter()
        async with client.stream("GET", url) as response:
            async for chunk in response.aiter_raw():
                size += len(chunk)
        elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "bytes": size,
        "fetched": size,
        "attempts": 1,
        "sha256": -1,
        "baseline_mib": baseline,
        "peak_mib": _vm_hwm_mib(),
    }


async def _child(url: str, ca_file: str, out: Path) -> dict[str, float]:
    from loader_module.download import Downloader, DownloadLimits

    baseline = _vm_hwm_mib()
    limits = DownloadLimits(
        max_bytes=8 * 1024 * MiB,
        min_free_bytes=0,
        attempts=5,
        backoff_initial=0.05,
        backoff_max=0.2,
        backoff_jitter=0.0,
    )

    async def progress(done: int, total: int | None, attempt: int) -> None:
        del done, total, attempt

    context = ssl.create_default_context(cafile=ca_file)
    async with httpx.AsyncClient(verify=context, timeout=httpx.Timeout(30.0)) as client:
        started = time.perf_counter()
        result = await Downloader(client, limits).fetch(
            lambda: url, out, expected_size=None, on_progress=progress
        )
        elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "bytes": result.size,
        "fetched": result.fetched,
        "attempts": result.attempts,
        "sha256": int(result.sha256.hex(), 16) % 1_000_000_007,
        "baseline_mib": baseline,
        "peak_mib": _vm_hwm_mib(),
    }


def _run_child(url: str, ca_file: Path, workdir: Path, *, raw: bool = False) -> dict[str, float]:
    out = workdir / "bench.part"
    for path in (out, out.with_suffix(".json")):
        path.unlink(missing_ok=True)
    flag = "--raw-child" if raw else "--child"
    done = subprocess.run(
        [sys.executable, "-m", "edge_tools.bench_download", flag, url, str(ca_file), str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    out.unlink(missing_ok=True)
    return result


def _write_blob(path: Path, size: int) -> int:
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 4 * MiB))
            handle.write(block)
            digest.update(block)
            remaining -= len(block)
    return int(digest.hexdigest(), 16) % 1_000_000_007


def _summary(values: list[float]) -> str:
    return f"{min(values):.0f} / {statistics.median(values):.0f} / {max(values):.0f}"


def run(mib: int, runs: int) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        workdir = Path(tmp)
        blob_file = workdir / "blob.bin"
        expected = _write_blob(blob_file, mib * MiB)
        with Azurite(workdir / "azurite") as azurite:
            with azurite.service_client() as service:
                container = service.get_container_client("bench")
                container.create_container()
                with blob_file.open("rb") as data:
                    container.upload_blob("big.zip", data, length=mib * MiB, max_concurrency=2)
            blob_file.unlink()
            rows: list[str] = []
            with FaultProxy(azurite.port) as proxy:
                modes = {
                    "baseline: plain httpx stream, no hashing, no file": (None, [Policy()]),
                    "direct": (None, [Policy()]),
                    "via proxy, no fault": (proxy.port, [Policy()]),
                    "via proxy, cut at 50 %, resumed": (
                        proxy.port,
                        [Policy(cut_after=mib * MiB // 2), Policy()],
                    ),
                }
                for mode, (port, policies) in modes.items():
                    results = []
                    for _ in range(runs):
                        proxy.set_policies(policies)
                        url = azurite.sas_url("bench", "big.zip", port=port)
                        raw = mode.startswith("baseline")
                        result = _run_child(url, azurite.ca_file, workdir, raw=raw)
                        if (not raw and result["sha256"] != expected) or result["bytes"] != mib * MiB:
                            raise RuntimeError(f"{mode}: downloaded bytes differ from the blob")
                        results.append(result)
                    rates = [r["bytes"] / MiB / r["seconds"] for r in results]
                    peaks = [r["peak_mib"] for r in results]
                    extra = [r["fetched"] / r["bytes"] for r in results]
                    rows.append(
                        f"| {mode} | {_summary(rates)} | {_summary(peaks)} | "
                        f"{statistics.median(r['baseline_mib'] for r in results):.0f} | "
                        f"{max(extra):.3f} | {max(int(r['attempts']) for r in results)} |"
                    )
    header = (
        f"Download of a {mib} MiB blob from Azurite over HTTPS on loopback with the loader's `Downloader` "
        f"(httpx streaming, MD5 + SHA-256 while streaming, 1 MiB writes); {runs} runs per mode, a fresh "
        "interpreter per run.\n\n"
        "| mode | MiB/s min / median / max | peak RSS MiB min / median / max | RSS after imports MiB | "
        "bytes fetched / size (max) | attempts (max) |\n|---|---|---|---|---|---|"
    )
    return header + "\n" + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=256, help="blob size in MiB")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode")
    parser.add_argument("--child", nargs=3, metavar=("URL", "CA_FILE", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--raw-child", nargs=3, metavar=("URL", "CA_FILE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.raw_child:
        url, ca_file, _ = args.raw_child
        sys.stdout.write(json.dumps(asyncio.run(_raw_child(url, ca_file))) + "\n")
        return 0
    if args.child:
        url, ca_file, out = args.child
        sys.stdout.write(json.dumps(asyncio.run(_child(url, ca_file, Path(out)))) + "\n")
        return 0
    sys.stdout.write(run(args.mib, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
