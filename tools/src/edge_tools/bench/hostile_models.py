"""Hostile inputs for the inference module's hardening benchmark and tests (issue 17).

`declared_input_onnx(side)`: a few-kB ONNX model with the tiny-YOLOv3 interface that declares a fixed
side×side image input (the review's 3.8 kB model declared 10000×10000: 1.2 GB per input tensor).
`rgba16_png_bomb(width, height)`: a PNG of zeros, 16-bit RGBA, that compresses about 1000:1.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def declared_input_onnx(side: int) -> bytes:
    """Image [1,3,side,side] and image_shape [1,2] in; boxes [1,1,4], scores [1,1,1], indices [1,0,3] out.

    The image is reduced to a mean that is multiplied by zero, so a run touches the whole input.
    """
    inits = [
        numpy_helper.from_array(np.zeros((1, 1, 4), np.float32), "boxes_const"),
        numpy_helper.from_array(np.zeros((1, 1, 1), np.float32), "scores_const"),
        numpy_helper.from_array(np.zeros((1, 0, 3), np.int32), "indices_const"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["input_1"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["scores_const", "nothing"], ["scores"]),
        helper.make_node("Identity", ["boxes_const"], ["boxes"]),
        helper.make_node("Identity", ["indices_const"], ["indices"]),
    ]
    return _tiny_yolo_interface("declared_input", nodes, inits, side, [1, 0, 3])


def rgba16_png_bomb(width: int, height: int) -> bytes:
    """A valid 16-bit RGBA PNG of zeros (width × 8 bytes a row, deflated row by row)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + width * 8)
    parts = [compressor.compress(row) for _ in range(height)]
    idat = b"".join(parts) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def image_dependent_indices_onnx(side: int = 416) -> bytes:
    """A model whose NMS-style indices point past its boxes, but only for an image that is not black.

    A black warm-up image yields no indices, so a warm-up on black passes; any real image yields
    (0, 0, 9999) for a boxes tensor of one row.
    """
    inits = [
        numpy_helper.from_array(np.zeros((1, 1, 4), np.float32), "boxes_const"),
        numpy_helper.from_array(np.full((1, 1, 1), 0.9, np.float32), "scores_const"),
        numpy_helper.from_array(np.array([[[0, 0, 9999]]], np.int32), "bad_indices"),
        numpy_helper.from_array(np.array(0.01, np.float32), "dark"),
        numpy_helper.from_array(np.array([0], np.int64), "starts"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["input_1"], ["mean"], axes=[0, 1, 2, 3], keepdims=0),
        helper.make_node("Greater", ["mean", "dark"], ["lit"]),
        helper.make_node("Cast", ["lit"], ["count"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["count"], ["ends"], axes=[0]),
        helper.make_node("Slice", ["bad_indices", "starts", "ends", "axes"], ["indices"]),
        helper.make_node("Identity", ["boxes_const"], ["boxes"]),
        helper.make_node("Identity", ["scores_const"], ["scores"]),
    ]
    return _tiny_yolo_interface("image_dependent_indices", nodes, inits, side, [1, "M", 3])


def _tiny_yolo_interface(
    name: str,
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    side: int,
    indices_shape: list[int | str],
) -> bytes:
    """The graph with the zoo's inputs (image, image_shape) and outputs (boxes, scores, indices)."""
    graph = helper.make_graph(
        nodes,
        name,
        inputs=[
            helper.make_tensor_value_info("input_1", TensorProto.FLOAT, [1, 3, side, side]),
            helper.make_tensor_value_info("image_shape", TensorProto.FLOAT, [1, 2]),
        ],
        outputs=[
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 1, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 1]),
            helper.make_tensor_value_info("indices", TensorProto.INT32, indices_shape),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data
