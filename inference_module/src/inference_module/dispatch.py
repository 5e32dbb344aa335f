"""The bounded pipeline: N worker threads, a short queue, and an immediate 503 past it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from inference_module.errors import OverloadedError
from inference_module.metrics import Metrics

P = ParamSpec("P")
T = TypeVar("T")


class Dispatcher:
    """Runs pipeline functions on its own threads; refuses work when `max_queue` requests already wait.

    Counting happens on the event loop only, so no lock is needed; a dedicated pool keeps model loads
    (which use the default executor) from delaying requests, and keeps per-thread buffers warm.
    """

    def __init__(self, threads: int, max_queue: int, metrics: Metrics) -> None:
        self._threads = threads
        self._limit = threads + max_queue
        self._pending = 0
        self._metrics = metrics
        self._executor: ThreadPoolExecutor | None = None

    @property
    def pending(self) -> int:
        return self._pending

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="inference-pipeline")

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def run(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._executor is None:
            raise RuntimeError("dispatcher is not started")
        if self._pending >= self._limit:
            raise OverloadedError(f"{self._pending} requests are already running or waiting; retry shortly")
        self._pending += 1
        self._metrics.queue_depth.set(self._pending)
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(func, *args, **kwargs))
        finally:
            self._pending -= 1
            self._metrics.queue_depth.set(self._pending)
