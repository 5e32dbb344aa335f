"""One download measured in a fresh interpreter, and the standalone download table built from it.

`python -m edge_tools.bench.download_probe [--mib 256] [--runs 3]` uploads a random blob to Azurite, then
downloads it in a fresh interpreter per run (so peak RSS is the download's own; one byte is fetched first,
untimed, so connection, TLS and first-use imports are not part of the rate) in four modes: a baseline
of plain httpx streaming (no hashing, no file), the loader direct, through the fault proxy without a fault
(the proxy's own cost), and through the proxy with a cut at half the blob (resume with Range + If-Match).
Prints a Markdown table: MiB/s and peak RSS (VmHWM), min / median / max. Section 3 of `make bench`
(`edge_tools.bench.download`) measures with the same `probe`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from edge_tools.azurite import Azurite
from edge_tools.faultproxy import FaultProxy, Policy

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one download in a child interpreter measured."""

    seconds: float
    bytes: int
    """Size of the downloaded object."""
    fetched: int
    """Bytes that came over the wire (more than `bytes` when a resume re-fetched some)."""
    attempts: int
    checksum: int
    """The SHA-256 of the bytes reduced mod 1e9+7 (as `write_random_blob` returns); -1 for the baseline."""
    baseline_mib: float
    """RSS after the imports, before the download."""
    peak_mib: float
    """Peak RSS (VmHWM) of the child."""
    cpu_seconds: float
    """CPU time of the child (user + system, every thread) during the timed download."""
    loop_cpu_seconds: float
    """CPU time of the event loop's thread during the timed download (the rest ran in other threads)."""


@dataclass(frozen=True, slots=True)
class DownloadTableOptions:
    """The standalone table: a blob of `mib` MiB, `runs` downloads per mode."""

    mib: int = 256
    runs: int = 3


def _vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def checksum_of(digest: bytes) -> int:
    """A SHA-256 digest reduced to a JSON-safe integer, as both sides of a comparison compute it."""
    return int(digest.hex(), 16) % 1_000_000_007


async def _warm_up(client: httpx.AsyncClient, url: str) -> None:
    """One byte of the blob on the same client before the clock starts, on both sides alike: the
    connection, its TLS handshake and the modules the HTTP stack imports on first use are ready, so
    the timed part is the transfer itself (a module imports once, a download repeats)."""
    response = await client.get(url, headers={"Range": "bytes=0-0"})
    if response.status_code != 206:
        raise RuntimeError(f"warm-up answered HTTP {response.status_code}")


def _cpu() -> tuple[float, float]:
    """(process CPU, this thread's CPU) in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, time.thread_time()


async def _plain_child(url: str, ca_file: str) -> Measurement:
    """Baseline: plain httpx streaming to nowhere (no hashing, no file, no resume bookkeeping)."""
    context = ssl.create_default_context(cafile=ca_file)
    size = 0
    async with httpx.AsyncClient(verify=context, timeout=httpx.Timeout(30.0)) as client:
        await _warm_up(client, url)
        baseline = _vm_hwm_mib()
        cpu, loop_cpu = _cpu()
        started = time.perf_counter()
        async with client.stream("GET", url) as response:
            async for chunk in response.aiter_raw():
                size += len(chunk)
        elapsed = time.perf_counter() - started
        cpu_after, loop_cpu_after = _cpu()
    return Measurement(
        elapsed, size, size, 1, -1, baseline, _vm_hwm_mib(), cpu_after - cpu, loop_cpu_after - loop_cpu
    )


async def _loader_child(url: str, ca_file: str, out: Path) -> Measurement:
    from loader_module.download import Downloader, DownloadLimits
    from loader_module.proxying import download_transport

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
    # The loader's own transport, as `make_http_client` builds it (no proxy).
    transport = download_transport(context, None, "")
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(30.0)) as client:
        await _warm_up(client, url)
        baseline = _vm_hwm_mib()
        cpu, loop_cpu = _cpu()
        started = time.perf_counter()
        result = await Downloader(client, limits).fetch(
            lambda: url, out, expected_size=None, on_progress=progress
        )
        elapsed = time.perf_counter() - started
        cpu_after, loop_cpu_after = _cpu()
    return Measurement(
        elapsed,
        result.size,
        result.fetched,
        result.attempts,
        checksum_of(result.sha256),
        baseline,
        _vm_hwm_mib(),
        cpu_after - cpu,
        loop_cpu_after - loop_cpu,
    )


def probe(url: str, ca_file: Path, workdir: Path, *, plain: bool = False) -> Measurement:
    """Download `url` once in a fresh interpreter: the loader's `Downloader`, or plain httpx if `plain`."""
    out = workdir / "bench.part"
    for path in (out, out.with_suffix(".json")):
        path.unlink(missing_ok=True)
    flag = "--plain-child" if plain else "--loader-child"
    done = subprocess.run(
        [sys.executable, "-m", "edge_tools.bench.download_probe", flag, url, str(ca_file), str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    out.unlink(missing_ok=True)
    return Measurement(**measured)


def write_random_blob(path: Path, size: int) -> int:
    """Write `size` random bytes to `path`; their checksum as `Measurement.checksum` reports it."""
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 4 * MiB))
            handle.write(block)
            digest.update(block)
            remaining -= len(block)
    return checksum_of(digest.digest())


def _summary(values: list[float]) -> str:
    return f"{min(values):.0f} / {statistics.median(values):.0f} / {max(values):.0f}"


def download_table(options: DownloadTableOptions) -> str:
    """Upload a blob to a fresh Azurite, download it in the four modes, return the Markdown table."""
    mib, runs = options.mib, options.runs
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        workdir = Path(tmp)
        blob_file = workdir / "blob.bin"
        expected = write_random_blob(blob_file, mib * MiB)
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
                    results: list[Measurement] = []
                    for _ in range(runs):
                        proxy.set_policies(policies)
                        url = azurite.sas_url("bench", "big.zip", port=port)
                        plain = mode.startswith("baseline")
                        result = probe(url, azurite.ca_file, workdir, plain=plain)
                        if (not plain and result.checksum != expected) or result.bytes != mib * MiB:
                            raise RuntimeError(f"{mode}: downloaded bytes differ from the blob")
                        results.append(result)
                    rates = [r.bytes / MiB / r.seconds for r in results]
                    peaks = [r.peak_mib for r in results]
                    extra = [r.fetched / r.bytes for r in results]
                    rows.append(
                        f"| {mode} | {_summary(rates)} | {_summary(peaks)} | "
                        f"{statistics.median(r.baseline_mib for r in results):.0f} | "
                        f"{max(extra):.3f} | {max(r.attempts for r in results)} |"
                    )
    header = (
        f"Download of a {mib} MiB blob from Azurite over HTTPS on loopback with the loader's `Downloader` "
        f"(httpx streaming, MD5 + SHA-256 while streaming, blocks of 1 to 4 MiB); {runs} runs per mode, a "
        "fresh interpreter per run, each first fetching one byte of the blob untimed (connection, TLS, "
        "first-use imports).\n\n"
        "| mode | MiB/s min / median / max | peak RSS MiB min / median / max | RSS after warm-up MiB | "
        "bytes fetched / size (max) | attempts (max) |\n|---|---|---|---|---|---|"
    )
    return header + "\n" + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    defaults = DownloadTableOptions()
    parser = argparse.ArgumentParser(
        prog="python -m edge_tools.bench.download_probe",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--mib", type=int, default=defaults.mib, help="blob size in MiB")
    parser.add_argument("--runs", type=int, default=defaults.runs, help="runs per mode")
    child = parser.add_mutually_exclusive_group()
    for flag in ("--loader-child", "--plain-child"):  # the measured process itself (see `probe`)
        child.add_argument(flag, nargs=3, metavar=("URL", "CA_FILE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_child:
        url, ca_file, _ = args.plain_child
        sys.stdout.write(json.dumps(asdict(asyncio.run(_plain_child(url, ca_file)))) + "\n")
        return 0
    if args.loader_child:
        url, ca_file, out = args.loader_child
        sys.stdout.write(json.dumps(asdict(asyncio.run(_loader_child(url, ca_file, Path(out))))) + "\n")
        return 0
    sys.stdout.write(download_table(DownloadTableOptions(mib=args.mib, runs=args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
