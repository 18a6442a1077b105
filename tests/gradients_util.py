"""Shared helpers for the gradient tests: seeds, ORT sessions, one-op models, finite differences."""
from __future__ import annotations

import os
import zlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

PROVIDERS = ["CPUExecutionProvider"]


def case_seed(case_id: str) -> int:
    """The seed of one test case: $BBCAM_GRAD_SEED if set, else a hash of the case id."""
    env = os.environ.get("BBCAM_GRAD_SEED")
    return int(env) if env else zlib.crc32(case_id.encode()) % (2**31)


def seed_note(seed: int) -> str:
    return f"seed={seed} (rerun with BBCAM_GRAD_SEED={seed})"


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=PROVIDERS)


def one_op_model(op_type: str, inputs: list[tuple[str, np.ndarray, bool]], attrs: dict,
                 n_outputs: int = 1, opset: int = 17, dynamic: bool = False) -> onnx.ModelProto:
    """A model holding one node. Inputs flagged True are graph inputs (differentiated), others
    initializers; an input named '' is an absent optional input. Outputs y0, y1, ...
    With ``dynamic`` every dim of the graph inputs is symbolic (shapes unknown statically)."""
    graph_inputs, inits, names = [], [], []
    for name, value, differentiable in inputs:
        names.append(name)
        if not name:
            continue
        if differentiable:
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype),
                [f"{name}{k}" for k in range(value.ndim)] if dynamic else list(value.shape)))
        else:
            inits.append(numpy_helper.from_array(np.asarray(value), name))
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, name=f"the_{op_type}", **attrs)
    graph = helper.make_graph([node], f"one_{op_type}", graph_inputs,
                              [helper.make_tensor_value_info(o, 0, None) for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=8)
    return onnx.shape_inference.infer_shapes(model)


def fd_gradient(score, x: np.ndarray, eps: float) -> np.ndarray:
    """Central finite-difference gradient of the scalar function ``score`` at ``x``."""
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        plus = score(x)
        flat[k] = old - eps
        minus = score(x)
        flat[k] = old
        grad.reshape(-1)[k] = (plus - minus) / (2 * eps)
    return grad


def not_implemented(exc: Exception) -> bool:
    text = str(exc)
    return "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose outputs are exactly ``names`` (types left to ORT)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {v.name: v for v in list(m.graph.value_info) + list(m.graph.output)
             + list(m.graph.input)}
    outs = [known[n] if n in known else helper.make_tensor_value_info(n, 1, None) for n in names]
    del m.graph.output[:]
    m.graph.output.extend(outs)
    return m


def cut_at(model: onnx.ModelProto, layer: str, shape: tuple | None, dtype: int,
           output: str) -> onnx.ModelProto:
    """A copy of ``model`` where tensor ``layer`` is a graph input instead of a node output,
    so the output can be evaluated at perturbed values of the layer."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for node in m.graph.node:
        for k, o in enumerate(node.output):
            if o == layer:
                node.output[k] = layer + "/cut"
    dims = None if shape is None else [d if d is not None else f"d{i}" for i, d in enumerate(shape)]
    m.graph.input.append(helper.make_tensor_value_info(layer, dtype, dims))
    return with_outputs(m, [output])


def directional_fd(score, x: np.ndarray, v: np.ndarray, eps: float) -> float:
    """(score(x + eps v) - score(x - eps v)) / (2 eps), in float64."""
    return (score(x + eps * v) - score(x - eps * v)) / (2 * eps)
