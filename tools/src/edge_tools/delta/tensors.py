"""Where the weights are: byte ranges of ONNX initializers and TFLite buffers, with name, dtype and shape.

Only the producer needs this (the applier reads offsets from the delta). ONNX is read at the protobuf
wire level, because the `onnx` package gives values, not file offsets: ModelProto.graph (7) →
GraphProto.initializer (5) → TensorProto dims (1), data_type (2), name (8), raw_data (9). TFLite is read
through its flatbuffer schema. A file that does not parse simply has no tensors (generic diff instead).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from math import prod

from ai_edge_litert import schema_py_generated as tflite

# ONNX TensorProto.DataType → element size (strings and complex types are left to the generic diff).
_ONNX_ITEM_SIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
# TFLite TensorType → element size.
_TFLITE_ITEM_SIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 12: 8, 15: 4, 16: 2}


class WireError(ValueError):
    """Bytes that are not the protobuf the parser expected."""


@dataclass(frozen=True)
class TensorRegion:
    """One tensor's raw bytes inside a model file."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    offset: int
    length: int
    item_size: int

    @property
    def key(self) -> tuple[str, int, tuple[int, ...]]:
        return (self.name, self.dtype, self.shape)


def find_tensors(file_name: str, data: bytes) -> list[TensorRegion]:
    """Tensor regions of a model file, sorted by offset and non-overlapping; [] when unknown or unparsable."""
    lower = file_name.lower()
    try:
        if lower.endswith(".onnx"):
            regions = _onnx_regions(data)
        elif lower.endswith(".tflite"):
            regions = _tflite_regions(data)
        else:
            return []
    except (WireError, IndexError, ValueError, TypeError, UnicodeDecodeError, struct.error):
        return []
    return _non_overlapping(regions)


def _non_overlapping(regions: list[TensorRegion]) -> list[TensorRegion]:
    kept: list[TensorRegion] = []
    end = 0
    for region in sorted(regions, key=lambda r: r.offset):
        if region.length and region.offset >= end:
            kept.append(region)
            end = region.offset + region.length
    return kept


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError("bad varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(field number, wire type, value or payload start, payload end) of each field in [start, end)."""
    out: list[tuple[int, int, int, int]] = []
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos, end)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos, end)
            out.append((number, wire, value, pos))
        elif wire == 1:
            out.append((number, wire, pos, pos + 8))
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            out.append((number, wire, pos, pos + length))
            pos += length
        elif wire == 5:
            out.append((number, wire, pos, pos + 4))
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if pos > end:
            raise WireError("field runs past its message")
    return out


def _onnx_regions(data: bytes) -> list[TensorRegion]:
    regions: list[TensorRegion] = []
    for number, wire, start, end in _fields(data, 0, len(data)):
        if number == 7 and wire == 2:
            for g_number, g_wire, g_start, g_end in _fields(data, start, end):
                if g_number == 5 and g_wire == 2:
                    region = _onnx_tensor(data, g_start, g_end)
                    if region is not None:
                        regions.append(region)
    return regions


def _onnx_tensor(data: bytes, start: int, end: int) -> TensorRegion | None:
    dims: list[int] = []
    dtype, name, raw, external = 0, "", (0, -1), False
    for number, wire, value, stop in _fields(data, start, end):
        if number == 1 and wire == 0:
            dims.append(value)
        elif number == 1 and wire == 2:
            pos = value
            while pos < stop:
                dim, pos = _varint(data, pos, stop)
                dims.append(dim)
        elif number == 2 and wire == 0:
            dtype = value
        elif number == 8 and wire == 2:
            name = data[value:stop].decode("utf-8")
        elif number == 9 and wire == 2:
            raw = (value, stop - value)
        elif number == 14 and wire == 0:
            external = value == 1
    item_size = _ONNX_ITEM_SIZE.get(dtype)
    if external or raw[1] <= 0 or item_size is None or prod(dims) * item_size != raw[1]:
        return None
    return TensorRegion(name, dtype, tuple(dims), raw[0], raw[1], item_size)


def _tflite_regions(data: bytes) -> list[TensorRegion]:
    if data[4:8] != b"TFL3":
        return []
    model = tflite.Model.GetRootAs(data, 0)
    seen: set[int] = set()
    regions: list[TensorRegion] = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            index = tensor.Buffer()
            if index in seen or index <= 0 or index >= model.BuffersLength():
                continue
            seen.add(index)
            item_size = _TFLITE_ITEM_SIZE.get(tensor.Type())
            span = _tflite_buffer_span(model.Buffers(index), len(data))
            shape = tuple(int(tensor.Shape(i)) for i in range(tensor.ShapeLength()))
            if span is None or item_size is None or prod(shape) * item_size != span[1]:
                continue
            name = (tensor.Name() or b"").decode("utf-8")
            regions.append(TensorRegion(name, int(tensor.Type()), shape, span[0], span[1], item_size))
    return regions


def _tflite_buffer_span(buffer: tflite.Buffer, file_size: int) -> tuple[int, int] | None:
    """(offset, length) of a buffer's bytes: inline `data` vector, or `offset`/`size` past the flatbuffer."""
    table = buffer._tab
    field = table.Offset(4)
    if field:
        start, length = int(table.Vector(field)), int(table.VectorLen(field))
    else:
        start, length = int(buffer.Offset()), int(buffer.Size())
    if length <= 0 or start < 0 or start + length > file_size:
        return None
    return start, length
