"""Blocking model builds (hash, load, warm-up) on a thread of their own, at a lower CPU priority.

A swap happens while requests are served on the same few cores: at the requests' priority, the build's
CPU work queued requests behind it. Linux schedules threads one by one, so raising the nice value of the
build's thread alone lets the request threads win the cores; the build gets what they leave and a
small share (a tenth of a request thread's at nice 10). The thread is new for every build and ends
with it: a pooled thread would keep the lower priority (an unprivileged process cannot take it back),
and the per-thread buffers a warm-up leaves end with it too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from inference_module.runtimes.base import RuntimeOptions

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

MAX_NICE = 19


def build_nice(load_nice: int, options: RuntimeOptions) -> int:
    """The nice increment for builds: `load_nice`, or 0 when the runtimes run threads of their own.

    Threads inherit their creator's priority, and a session or interpreter with more than one thread
    starts its pool while it loads: built at a lower priority, the model would serve at it for good.
    """
    threads = (options.ort_intra_op_threads, options.ort_inter_op_threads, options.tflite_threads)
    if load_nice and threads != (1, 1, 1):
        logger.info(
            "model loads run at the requests' priority: the runtimes' own threads, started by a load, "
            "would keep a lower one (set the ONNX Runtime and TFLite threads to 1 to lower it)",
            extra={"load_nice": load_nice},
        )
        return 0
    return load_nice


def lower_thread_priority(increment: int, thread_id: int | None = None) -> bool:
    """Add `increment` to the nice value of one thread (default: the calling one), up to 19.

    True when done; False (logged) where the platform has no per-thread priority or the call fails,
    since a build at normal priority is slower for requests, not wrong.
    """
    if increment <= 0:
        return False
    if sys.platform != "linux":  # elsewhere PRIO_PROCESS with a thread id would name a process
        return False
    native_id = threading.get_native_id() if thread_id is None else thread_id
    try:
        current = os.getpriority(os.PRIO_PROCESS, native_id)
        os.setpriority(os.PRIO_PROCESS, native_id, min(MAX_NICE, current + increment))
    except OSError as exc:
        logger.warning(
            "cannot lower the model build's CPU priority; it runs at the requests' priority: %s",
            exc,
            extra={"thread_id": native_id},
        )
        return False
    return True


def start_build(nice: int, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
    """Run `func` on a new daemon thread at `nice` more than the caller, in a copy of the caller's
    context (log fields carry over); its outcome as a future of the running loop.

    Daemon: a load that hangs in native code (then abandoned by its caller) must not hold up shutdown.
    """
    loop = asyncio.get_running_loop()
    outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
    context = contextvars.copy_context()

    def build() -> None:
        if not outcome.set_running_or_notify_cancel():
            return
        lower_thread_priority(nice)
        try:
            result = context.run(func, *args, **kwargs)
        except BaseException as exc:  # handed to the awaiting task, which decides
            outcome.set_exception(exc)
        else:
            outcome.set_result(result)

    threading.Thread(target=build, name="model-build", daemon=True).start()
    return asyncio.wrap_future(outcome, loop=loop)
