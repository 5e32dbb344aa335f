"""Model builds run on a thread of their own at a lower CPU priority, and give freed memory back."""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from edge_shared.reported import Runtime
from edge_tools.fixtures import FixtureCatalog
from inference_module import build_thread
from inference_module.build_thread import build_nice, lower_thread_priority, start_build
from inference_module.errors import ModelLoadError
from inference_module.metrics import Metrics
from inference_module.runtimes import default_registry
from inference_module.runtimes.base import DetectorFactory, RuntimeOptions
from inference_module.service import ModelService
from inference_module.settings import InferenceSettings
from inference_module.slot import ModelSlot
from tests.inference.helpers import GatedDetector, install_model

_request = contextvars.ContextVar[str]("request", default="none")


def nice_of(native_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, native_id)


def expected_nice(increment: int) -> int:
    return min(build_thread.MAX_NICE, nice_of(threading.get_native_id()) + increment)


def where_and_how(fail: bool = False) -> tuple[int, int, str]:
    if fail:
        raise ModelLoadError("the build failed")
    native_id = threading.get_native_id()
    return native_id, nice_of(native_id), _request.get()


async def test_a_build_runs_on_a_new_thread_at_a_lower_priority_in_the_callers_context() -> None:
    caller = threading.get_native_id()
    before = nice_of(caller)
    _request.set("swap-7")
    native_id, nice, context = await start_build(5, where_and_how)
    assert native_id != caller
    assert nice == expected_nice(5)
    assert context == "swap-7"  # log fields bound by the swap reach the build's log lines
    assert nice_of(caller) == before  # the event loop (and so the requests) keep their priority


async def test_a_build_that_fails_raises_its_error_to_the_caller() -> None:
    with pytest.raises(ModelLoadError, match="the build failed"):
        await start_build(5, where_and_how, fail=True)


async def test_a_zero_increment_keeps_the_callers_priority() -> None:
    _, nice, _ = await start_build(0, where_and_how)
    assert nice == nice_of(threading.get_native_id())


def test_a_priority_that_cannot_be_lowered_is_logged_and_the_build_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    no_such_thread = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    assert not lower_thread_priority(5, no_such_thread)
    assert "cannot lower the model build's CPU priority" in caplog.text


def test_elsewhere_than_linux_no_priority_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "darwin")  # a thread id there could name a process
    seen: list[bool] = []
    worker = threading.Thread(target=lambda: seen.append(lower_thread_priority(5)))
    worker.start()
    worker.join(10)
    assert seen == [False]


@pytest.mark.parametrize(
    ("options", "increment"),
    [
        (RuntimeOptions(), 10),
        (RuntimeOptions(ort_intra_op_threads=2), 0),
        (RuntimeOptions(ort_intra_op_threads=0), 0),  # ONNX Runtime's default: one thread per core
        (RuntimeOptions(ort_inter_op_threads=2), 0),
        (RuntimeOptions(tflite_threads=4), 0),
    ],
)
def test_runtimes_with_threads_of_their_own_are_built_at_the_requests_priority(
    options: RuntimeOptions, increment: int
) -> None:
    assert build_nice(10, options) == increment


def make_service(
    root: Path, registry: Mapping[Runtime, DetectorFactory], *, load_nice: int = 10, ort_threads: int = 1
) -> ModelService:
    settings = InferenceSettings(
        model_root=root, edgehub=False, load_nice=load_nice, ort_intra_op_threads=ort_threads
    )
    return ModelService(settings, ModelSlot(), Metrics(), registry, memory_probe=lambda: None)


def thread_ids() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/task")}


async def test_swaps_build_at_the_configured_lower_priority(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    seen: list[int] = []

    def factory(model_path: Path, options: RuntimeOptions) -> GatedDetector:  # noqa: ARG001
        seen.append(nice_of(threading.get_native_id()))
        detector = GatedDetector(name="v1", warm_ups=1)
        detector.gate.set()
        return detector

    service = make_service(model_root, {"onnx": factory}, load_nice=7)
    await service.load_current("startup")
    assert seen == [expected_nice(7)]


async def test_a_model_with_runtime_threads_serves_at_the_requests_priority(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    """ONNX Runtime starts its intra-op pool while the session loads; those threads must not inherit
    a build's lower priority, or every request on the model would run at it."""
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    service = make_service(model_root, default_registry(), ort_threads=2)
    before = thread_ids()
    await service.load_current("startup")
    started = thread_ids() - before
    assert started, "the session started no thread of its own"
    assert {nice_of(native_id) for native_id in started} == {nice_of(threading.get_native_id())}
