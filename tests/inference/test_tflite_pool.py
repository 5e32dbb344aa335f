"""The TFLite interpreter pool: one interpreter per call, each in turn, so warm-up reaches all of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_module.errors import ModelLoadError
from inference_module.runtimes.base import RuntimeOptions
from inference_module.runtimes.tflite_pool import InterpreterPool, open_interpreters


def test_consecutive_borrows_hand_out_each_interpreter_in_turn() -> None:
    pool = InterpreterPool(["a", "b", "c"])
    seen = []
    for _ in range(6):
        with pool.borrow() as interpreter:
            seen.append(interpreter)
    assert seen == ["a", "b", "c", "a", "b", "c"]


def test_an_interpreter_in_use_is_not_handed_out_twice() -> None:
    pool = InterpreterPool(["a", "b"])
    with pool.borrow() as first, pool.borrow() as second:
        assert {first, second} == {"a", "b"}


def test_an_empty_pool_is_a_load_error() -> None:
    with pytest.raises(ModelLoadError):
        InterpreterPool([])


def test_a_file_that_is_not_a_tflite_model_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "x.tflite"
    path.write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelLoadError, match="TFLite could not load"):
        open_interpreters(path, RuntimeOptions(pipeline_threads=2))
