"""The hostile review's attacks (issue 17) against a real `python -m inference_module`, with figures.

`python -m edge_tools.bench.hostile [--out build/hostile.md]` runs each attack once against a fresh
standalone process with the default settings and prints one Markdown table: what was tried, what the
module answered, how long it took and what it cost in memory (VmRSS / VmHWM of that process from
/proc; VmHWM is reset through `clear_refs` before each attack). docs/reliability.md quotes a run.
Takes about two minutes: the slowloris and stalled-body attacks wait for the default timeouts.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from edge_shared.repository import ModelRepository
from edge_tools.bench.hostile_models import declared_input_onnx, image_dependent_indices_onnx, rgba16_png_bomb
from edge_tools.bench.inference_process import InferenceProcess, install_fixture, status_kib
from edge_tools.fixtures import FixtureCatalog, ensure_fixtures, make_square_image, replace_manifest
from inference_module.service import file_sha256

logger = logging.getLogger(__name__)
MiB = 1024 * 1024
WAIT = 120.0


@dataclass(frozen=True, slots=True)
class Row:
    attack: str
    answer: str
    seconds: float
    memory: str


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def memory_note(pid: int, before_kib: int) -> str:
    """RSS before → peak → after the attack."""
    return f"RSS {mib(before_kib)} → peak {mib(status_kib(pid, 'VmHWM'))} → {mib(status_kib(pid, 'VmRSS'))}"


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def code_of(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "-"


def replace_model(root: Path, version: str, data: bytes) -> None:
    """Overwrite a version's model file and its manifest digest, as if the loader had installed it."""
    repository = ModelRepository(root)
    manifest = repository.read_manifest(version)
    model = repository.version_dir(version) / manifest.model_file
    model.write_bytes(data)
    replace_manifest(root, version, files={**manifest.files, manifest.model_file: file_sha256(model)})


# --- the attacks ------------------------------------------------------------------------------------


def tiny_model_huge_input(catalog: FixtureCatalog, work: Path) -> list[Row]:
    root = work / "declared"
    install_fixture(root, catalog, "tiny-yolo-1", current=False)
    install_fixture(root, catalog, "tiny-yolo-2")
    data = declared_input_onnx(10_000)
    replace_model(root, "tiny-yolo-2", data)
    started = time.perf_counter()
    with InferenceProcess(root, work / "declared.log", wait_for="/health/live") as process:
        live = time.perf_counter() - started
        ready, body = request(process.port, "GET", "/health/ready")
        rows = [
            Row(
                f"{len(data)}-byte ONNX declaring a 10000×10000 input, `current` at a fresh start",
                f"start-up load refused (`insufficient_memory` in the log); /health/ready {ready} "
                f"`{code_of(body)}`",
                live,
                f"peak RSS of the whole process {mib(status_kib(process.pid, 'VmHWM'))}",
            )
        ]
        ModelRepository(root).set_current("tiny-yolo-1")
        status, _ = request(process.port, "POST", "/model/reload")
        ModelRepository(root).set_current("tiny-yolo-2")
        before = status_kib(process.pid, "VmRSS")
        reset_peak(process.pid)
        began = time.perf_counter()
        status, body = request(process.port, "POST", "/model/reload")
        rows.append(
            Row(
                "the same model by `POST /model/reload` beside a serving model",
                f"{status} `{code_of(body)}`; the old model serves",
                time.perf_counter() - began,
                memory_note(process.pid, before),
            )
        )
    return rows


async def _slowloris(port: int, connections: int) -> tuple[float, int, float]:
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    started = time.perf_counter()
    for _, writer in streams:
        writer.write(b"POST /score HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
    loop = asyncio.get_running_loop()
    live_began = time.perf_counter()
    status, _ = await loop.run_in_executor(None, request, port, "GET", "/health/live")
    live_seconds = time.perf_counter() - live_began

    async def closed(reader: asyncio.StreamReader) -> bytes:
        async with asyncio.timeout(WAIT):
            return await reader.read()

    answers = await asyncio.gather(*(closed(reader) for reader, _ in streams))
    elapsed = time.perf_counter() - started
    for _, writer in streams:
        writer.close()
    timeouts = sum(answer.startswith(b"HTTP/1.1 408") for answer in answers)
    return elapsed, timeouts if status == 200 else -1, live_seconds


async def _stalled_bodies(port: int, connections: int, size: int, sent: int) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    chunk = b"\0" * MiB

    async def one() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % size
        )
        remaining = sent
        try:
            while remaining > 0:
                writer.write(chunk[: min(len(chunk), remaining)])
                remaining -= min(len(chunk), remaining)
                await writer.drain()
            async with asyncio.timeout(WAIT):
                answer = await reader.read()
        except (ConnectionError, TimeoutError) as exc:
            return type(exc).__name__
        finally:
            writer.close()
        return answer.split(b"\r\n", 1)[0].decode(errors="replace")[9:12] or "closed"

    results = await asyncio.gather(*(one() for _ in range(connections)))
    counts: dict[str, int] = {}
    for result in results:
        counts[result] = counts.get(result, 0) + 1
    return time.perf_counter() - started, counts


def connection_attacks(catalog: FixtureCatalog, work: Path) -> list[Row]:
    root = work / "connections"
    install_fixture(root, catalog, "tiny-yolo-1")
    rows = []
    with InferenceProcess(root, work / "connections.log", access_log=False) as process:
        before = status_kib(process.pid, "VmRSS")
        reset_peak(process.pid)
        elapsed, timeouts, live = asyncio.run(_slowloris(process.port, 100))
        rows.append(
            Row(
                "slowloris: 100 connections send part of their headers, then nothing",
                f"{timeouts} of 100 answered 408 and closed; /health/live meanwhile: {live * 1000:.0f} ms",
                elapsed,
                memory_note(process.pid, before),
            )
        )
        before = status_kib(process.pid, "VmRSS")
        reset_peak(process.pid)
        size = 20 * MiB
        elapsed, counts = asyncio.run(_stalled_bodies(process.port, 30, size, size - 100 * 1024))
        rows.append(
            Row(
                "30 connections announce a 20 MiB body, send all but 100 kB, stall",
                ", ".join(f"{count}× {status}" for status, count in sorted(counts.items())),
                elapsed,
                memory_note(process.pid, before),
            )
        )
        began = time.perf_counter()
        hangups = asyncio.run(_hang_ups(process.port, 20))
        status, metrics = request(process.port, "GET", "/metrics")
        lines = [
            line
            for line in metrics.decode().splitlines()
            if line.startswith("inference_requests_total{") and ('"499"' in line or '"500"' in line)
        ]
        rows.append(
            Row(
                f"{hangups} clients hang up in the middle of their body",
                "; ".join(lines) or "no request counted",
                time.perf_counter() - began,
                "-",
            )
        )
    return rows


async def _hang_ups(port: int, count: int) -> int:
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"\0" * 1000)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    await asyncio.sleep(0.5)  # benchmark only: let the server notice the hang-ups before reading metrics
    return count


def concurrently(count: int, call: Callable[[], tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def run() -> None:
        result = call()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    return results


def summary(results: Sequence[tuple[int, bytes]]) -> str:
    counts: dict[str, int] = {}
    for status, body in results:
        key = f"{status} `{code_of(body)}`" if status != 200 else "200"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{count}× {key}" for key, count in sorted(counts.items()))


def decode_attacks(catalog: FixtureCatalog, work: Path) -> list[Row]:
    root = work / "decode"
    install_fixture(root, catalog, "tiny-yolo-1")
    bomb = rgba16_png_bomb(7000, 5671)
    buffer = io.BytesIO()
    Image.new("RGB", (4096, 4096)).save(buffer, "PNG")
    large = buffer.getvalue()
    normal = make_square_image(640, 480, [(200, 150, 300, 250)], "JPEG")
    rows = []
    with InferenceProcess(root, work / "decode.log", access_log=False) as process:
        for name, data in (
            (f"6 at once: {len(bomb) // 1024} kB PNG, 7000×5671 = 39.7 Mpx, 16-bit RGBA", bomb),
            (f"6 at once: {len(large) // 1024} kB PNG, 4096×4096 RGB (16.8 Mpx, just allowed)", large),
        ):
            before = status_kib(process.pid, "VmRSS")
            reset_peak(process.pid)
            began = time.perf_counter()
            normal_result: list[float] = []

            def score(body: bytes = data) -> tuple[int, bytes]:
                return request(process.port, "POST", "/score", body, {"Content-Type": "image/png"})

            def timed_normal(normal_result: list[float] = normal_result) -> None:
                time.sleep(0.05)  # benchmark only: start once the large ones are in
                started = time.perf_counter()
                request(process.port, "POST", "/score", normal, {"Content-Type": "image/jpeg"})
                normal_result.append(time.perf_counter() - started)

            side = threading.Thread(target=timed_normal)
            side.start()
            results = concurrently(6, score)
            side.join(WAIT)
            elapsed = time.perf_counter() - began
            time.sleep(1.0)  # benchmark only: RSS after the requests, not during their last bytes
            rows.append(
                Row(
                    name,
                    f"{summary(results)}; a normal 640×480 JPEG meanwhile took "
                    f"{normal_result[0] * 1000:.0f} ms",
                    elapsed,
                    memory_note(process.pid, before),
                )
            )
    return rows


def model_folder_attacks(catalog: FixtureCatalog, work: Path) -> list[Row]:
    root = work / "folder"
    install_fixture(root, catalog, "tiny-yolo-1")
    install_fixture(root, catalog, "tiny-yolo-2", current=False)
    rows = []
    with InferenceProcess(root, work / "folder.log", access_log=False) as process:
        repository = ModelRepository(root)
        manifest = repository.read_manifest("tiny-yolo-2")
        model = repository.version_dir("tiny-yolo-2") / manifest.model_file
        model.unlink()
        os.mkfifo(model)
        repository.set_current("tiny-yolo-2")
        try:
            for attempt in ("first", "second"):
                began = time.perf_counter()
                status, body = request(process.port, "POST", "/model/reload")
                rows.append(
                    Row(
                        f"FIFO as the model file, `POST /model/reload` ({attempt})",
                        f"{status} `{code_of(body)}`",
                        time.perf_counter() - began,
                        "-",
                    )
                )
        finally:
            model.unlink()
        replace_model(root, "tiny-yolo-2", image_dependent_indices_onnx())
        began = time.perf_counter()
        status, body = request(process.port, "POST", "/model/reload")
        scored, _ = request(
            process.port, "POST", "/score", make_square_image(640, 480, [(200, 150, 300, 250)], "JPEG")
        )
        rows.append(
            Row(
                "ONNX whose indices point past its boxes on any non-black image, reloaded",
                f"{status} `{code_of(body)}`; /score still {scored} on the old model",
                time.perf_counter() - began,
                "-",
            )
        )
        for headers in ({"Origin": "http://evil.example"}, {"Content-Type": "text/plain"}):
            status, body = request(process.port, "POST", "/model/reload", b"x", headers)
            rows.append(Row(f"`POST /model/reload` with {headers}", f"{status} `{code_of(body)}`", 0.0, "-"))
    return rows


ATTACKS: tuple[Callable[[FixtureCatalog, Path], list[Row]], ...] = (
    tiny_model_huge_input,
    connection_attacks,
    decode_attacks,
    model_folder_attacks,
)


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| attack | answer | seconds | memory |", "|---|---|---|---|"]
    lines += [f"| {row.attack} | {row.answer} | {row.seconds:.2f} | {row.memory} |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_tools.bench.hostile", description=__doc__)
    parser.add_argument("--fixtures", type=Path, default=Path("build/fixtures"))
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    catalog = ensure_fixtures(args.fixtures)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as directory:
        for attack in ATTACKS:
            logger.info("running %s", attack.__name__)
            rows += attack(catalog, Path(directory))
    report = markdown(rows)
    sys.stdout.write(report)
    if args.out is not None:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
