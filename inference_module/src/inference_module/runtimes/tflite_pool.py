"""What the TFLite runtimes share: TFLite interpreters are not thread-safe, so each model keeps a pool
with one interpreter per pipeline thread, every one allocated and warmed before the model serves."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from inference_module.errors import ModelLoadError
from inference_module.runtimes.base import (
    DetectorMetadata,
    RawDetections,
    RuntimeOptions,
    check_declared_memory,
)

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # pragma: no cover - optional fallback; tflite_runtime needs numpy<2
    from tflite_runtime.interpreter import Interpreter

__all__ = ["Interpreter", "InterpreterPool", "open_interpreters", "warm_up"]


class InterpreterPool:
    """Identical interpreters handed out one per call; FIFO, so consecutive calls use each in turn."""

    def __init__(self, interpreters: list[Any]) -> None:
        if not interpreters:
            raise ModelLoadError("no TFLite interpreter was created")
        self.first = interpreters[0]
        self.size = len(interpreters)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for interpreter in interpreters:
            self._queue.put(interpreter)

    @contextmanager
    def borrow(self) -> Iterator[Any]:
        interpreter = self._queue.get()
        try:
            yield interpreter
        finally:
            self._queue.put(interpreter)

    def close(self) -> None:
        """Drop the interpreters (called once no request uses the model any more)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


def open_interpreters(model_path: Path, options: RuntimeOptions) -> list[Any]:
    """One allocated interpreter per pipeline thread; any engine error becomes `ModelLoadError`."""
    interpreters: list[Any] = []
    try:
        for _ in range(max(1, options.pipeline_threads)):
            interpreter = Interpreter(model_path=str(model_path), num_threads=options.tflite_threads)
            if not interpreters:  # the signature is known before anything is allocated
                for tensor in interpreter.get_input_details():
                    check_declared_memory(tensor["shape"], tensor["dtype"], options)
            interpreter.allocate_tensors()
            interpreters.append(interpreter)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"TFLite could not load the model: {exc}") from exc
    return interpreters


class _Detects(Protocol):
    @property
    def metadata(self) -> DetectorMetadata: ...

    def detect(self, image: Image.Image) -> RawDetections: ...


def warm_up(detector: _Detects, interpreters: int) -> None:
    """Run a blank image once per interpreter (the pool hands each out in turn)."""
    shape = detector.metadata.input_shape
    blank = Image.new("RGB", (shape[2], shape[1]))
    try:
        for _ in range(interpreters):
            detector.detect(blank)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"warm-up inference failed: {exc}") from exc
