"""Memory probe (host and cgroup v2 figures), the dispatcher's start requirement, and close failures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from inference_module.dispatch import Dispatcher
from inference_module.labels import parse_labels
from inference_module.memory import available_memory_bytes, give_back_memory, rss_bytes
from inference_module.metrics import Metrics
from inference_module.slot import LoadedModel, ModelIdentity, ModelSlot
from tests.inference.helpers import GatedDetector

MiB = 1024 * 1024


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_host_figure_alone_when_there_is_no_cgroup_limit(tmp_path: Path) -> None:
    meminfo = write(tmp_path / "meminfo", "MemTotal: 2048000 kB\nMemAvailable: 1024 kB\n")
    write(tmp_path / "cg" / "memory.max", "max\n")
    assert available_memory_bytes(meminfo, tmp_path / "cg") == 1024 * 1024
    assert available_memory_bytes(meminfo, tmp_path / "no-cgroup") == 1024 * 1024


def test_a_cgroup_limit_below_the_host_figure_wins(tmp_path: Path) -> None:
    meminfo = write(tmp_path / "meminfo", "MemAvailable: 4096000 kB\n")
    write(tmp_path / "cg" / "memory.max", str(300 * MiB))
    write(tmp_path / "cg" / "memory.current", str(100 * MiB))
    assert available_memory_bytes(meminfo, tmp_path / "cg") == 200 * MiB


def test_unreadable_figures_mean_unknown(tmp_path: Path) -> None:
    garbled = write(tmp_path / "meminfo", "MemAvailable: lots\n")
    write(tmp_path / "cg" / "memory.max", "not a number")
    assert available_memory_bytes(garbled, tmp_path / "cg") is None
    assert available_memory_bytes(tmp_path / "missing", tmp_path / "missing") is None


def test_this_machine_reports_something() -> None:
    available = available_memory_bytes()
    assert available is None or available > 0


async def test_the_dispatcher_refuses_work_before_start_and_after_stop() -> None:
    dispatcher = Dispatcher(1, 0, Metrics())
    with pytest.raises(RuntimeError, match="not started"):
        await dispatcher.run(int, "1")
    dispatcher.start()
    assert await dispatcher.run(int, "41") + 1 == 42
    dispatcher.stop()
    with pytest.raises(RuntimeError, match="not started"):
        await dispatcher.run(int, "1")


def test_a_detector_that_fails_to_close_is_still_marked_closed() -> None:
    class BrokenClose(GatedDetector):
        def close(self) -> None:
            raise OSError("native resource already gone")

    identity = ModelIdentity(
        version="v1",
        file_name="v1.zip",
        runtime="onnx",
        sha256="0" * 64,
        model_path=Path("/m/model.onnx"),
        labels_path=Path("/m/labels.txt"),
        loaded_at=datetime.now(UTC),
    )
    model = LoadedModel(BrokenClose("v1"), parse_labels("a\n"), identity)
    slot = ModelSlot()
    slot.install(model)
    slot.close()
    assert model.closed.is_set()


def test_resident_memory_is_read_and_grows_with_what_this_process_holds() -> None:
    before = rss_bytes()
    held = bytearray(64 * MiB)
    held[::4096] = b"\1" * len(held[::4096])  # touch every page
    after = rss_bytes()
    assert before is not None and after is not None
    assert after - before > 32 * MiB
    del held


def test_rss_is_unknown_without_proc(tmp_path: Path) -> None:
    assert rss_bytes(tmp_path / "missing") is None


def test_freed_heap_memory_can_be_given_back_on_glibc() -> None:
    """The image's Python is glibc-based (python:3.11-slim-bookworm), as is this machine's."""
    assert give_back_memory() is True
