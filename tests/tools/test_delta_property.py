"""Property: for random tensor edits, apply(diff(a, b), a) == b, byte for byte (ONNX and TFLite)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from edge_shared.delta import apply_delta
from edge_tools.delta import make_delta
from edge_tools.delta.tensors import find_tensors
from edge_tools.fixtures import build_ssd_tflite, make_model_zip
from tests.shared.test_delta_apply import install_base

DTYPES = (np.float32, np.float16, np.int8, np.int64, np.uint8)
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tensor_sets(draw: st.DrawFn) -> list[tuple[str, np.ndarray]]:
    count = draw(st.integers(1, 5))
    tensors = []
    for index in range(count):
        dtype = draw(st.sampled_from(DTYPES))
        shape = tuple(draw(st.lists(st.integers(1, 12), min_size=0, max_size=3)))
        seed = draw(st.integers(0, 2**32 - 1))
        raw = np.random.default_rng(seed).integers(
            0, 256, size=int(np.prod(shape)) * np.dtype(dtype).itemsize
        )
        tensors.append(
            (f"t{index}", np.frombuffer(raw.astype(np.uint8).tobytes(), dtype=dtype).reshape(shape))
        )
    return tensors


Edit = tuple[str, int, int, int]  # kind, tensor index, element index, seed


def onnx_model(tensors: list[tuple[str, np.ndarray]]) -> bytes:
    initializers = [numpy_helper.from_array(value, name=name) for name, value in tensors]
    graph = helper.make_graph([], "g", [], [], initializer=initializers)
    return bytes(helper.make_model(graph, producer_name="delta-property").SerializeToString())


def edited(tensors: list[tuple[str, np.ndarray]], edits: list[Edit]) -> list[tuple[str, np.ndarray]]:
    out = [(name, value.copy()) for name, value in tensors]
    for kind, t_index, e_index, seed in edits:
        name, value = out[t_index % len(out)]
        rng = np.random.default_rng(seed)
        if kind == "element":
            flat = value.reshape(-1).view(np.uint8)
            flat[e_index % flat.size] ^= int(rng.integers(1, 256))
        elif kind == "reshape":  # same name, another shape: no longer matches, goes through the generic diff
            out[t_index % len(out)] = (name, np.concatenate([value.reshape(-1), value.reshape(-1)[:1]]))
        elif kind == "rename":
            out[t_index % len(out)] = (f"{name}_renamed", value)
        elif kind == "add":
            out.append((f"new{seed}", rng.standard_normal(e_index % 50 + 1).astype(np.float32)))
        elif kind == "drop" and len(out) > 1:
            out.pop(t_index % len(out))
    return out


def round_trip(base_zip: bytes, target_zip: bytes, prefer: str | None = None) -> bytes:
    build = make_delta(base_zip, target_zip, base_version="a", target_version="b", prefer=prefer)
    if prefer is not None:
        assert prefer in {f.kind for f in build.files}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        install_base(base_zip, root / "base")
        (root / "d.emdelta").write_bytes(build.delta)
        apply_delta(root / "d.emdelta", root / "base", root / "out.zip", base_version="a")
        return (root / "out.zip").read_bytes()


@PROPERTY
@given(
    tensors=tensor_sets(),
    edits=st.lists(
        st.tuples(
            st.sampled_from(("element", "element", "element", "reshape", "rename", "add", "drop")),
            st.integers(0, 10),
            st.integers(0, 10_000),
            st.integers(0, 2**32 - 1),
        ),
        max_size=8,
    ),
    labels_changed=st.booleans(),
)
def test_onnx_tensor_edits_round_trip(
    tensors: list[tuple[str, np.ndarray]], edits: list[Edit], labels_changed: bool
) -> None:
    base = make_model_zip(onnx_model(tensors), "model.onnx", "a\nb\n", "labels.txt")
    target_model = onnx_model(edited(tensors, edits))  # edits are deterministic: same result when redone
    onnx.load_from_string(target_model)  # the edit produced a valid model
    target = make_model_zip(
        target_model, "model.onnx", "a\nc\n" if labels_changed else "a\nb\n", "labels.txt"
    )
    assert round_trip(base, target) == target
    new = edited(tensors, edits)
    before = {name: (value.dtype, value.shape) for name, value in tensors}
    if target_model != onnx_model(tensors) and any(before.get(n) == (v.dtype, v.shape) for n, v in new):
        assert round_trip(base, target, prefer="tensor-delta") == target


SSD = build_ssd_tflite("v1")
SSD_REGIONS = find_tensors("detect.tflite", SSD)


@PROPERTY
@given(
    st.lists(
        st.tuples(st.integers(0, len(SSD_REGIONS) - 1), st.integers(0, 2**20), st.integers(1, 255)),
        max_size=20,
    )
)
def test_tflite_buffer_edits_round_trip(edits: list[tuple[int, int, int]]) -> None:
    data = bytearray(SSD)
    for region_index, position, flip in edits:
        region = SSD_REGIONS[region_index]
        data[region.offset + position % region.length] ^= flip
    base = make_model_zip(SSD, "detect.tflite", "???\nperson\n", "labelmap.txt")
    target = make_model_zip(bytes(data), "detect.tflite", "???\nperson\n", "labelmap.txt")
    assert round_trip(base, target) == target
    if bytes(data) != SSD:
        assert round_trip(base, target, prefer="tensor-delta") == target
