"""Small builders for the hostile-input and vendor-pipeline tests (models and files made here)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` RGB pixels but holds almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def pooled_linear(path: Path, weights: np.ndarray, *, size=(8, 8), head: str | None = None,
                  metadata: dict[str, str] | None = None, post: list | None = None, relu: bool = False,
                  inits: list | None = None, out_dims: list | None = None) -> Path:
    """GlobalAveragePool -> Flatten -> Gemm(weights: [classes, 3]) on an NCHW float input.

    ``head``: None (logits), "sigmoid" (a Sigmoid after the Gemm). ``post``: extra nodes that
    read "z" and write "out". ``metadata``: the model's ``metadata_props``. ``relu``: a Relu
    before the pooling, so there is a 4-D feature map for the white-box methods. ``inits``:
    extra initializers for ``post``; ``out_dims``: the output's dims (default ``["N", classes]``).
    """
    k = weights.shape[0]
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["z"], transB=1)]
    if relu:
        nodes.insert(0, helper.make_node("Relu", ["x"], ["a"]))
        nodes[1].input[0] = "a"
    if head == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["z"], ["out"]))
    elif post:
        nodes.extend(post)
    else:
        nodes[-1].output[0] = "out"
    inits = [helper.make_tensor("W", TensorProto.FLOAT, [k, 3], weights.astype(np.float32).ravel()),
             helper.make_tensor("b", TensorProto.FLOAT, [k], np.zeros(k, np.float32))] + list(inits or [])
    g = helper.make_graph(nodes, "pooled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, *size])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_dims or ["N", k])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
