"""Read-only views of a forward graph: static shapes, dtypes, constants, reachability.

Tensor dims, graph inputs and producers come from :mod:`blackbox_cam.model.signature`, the one
reader of ONNX facts, so the gradient builder and the runtime follow the same rules.
"""
from __future__ import annotations

import itertools
from typing import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from blackbox_cam.gradients.rules import GraphFacts
from blackbox_cam.model.signature import dims as tensor_dims
from blackbox_cam.model.signature import graph_inputs, static_shape

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
               onnx.TensorProto.BFLOAT16}


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 1


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_floats", "value_int", "value_ints"):
            v = helper.get_attribute_value(a)
            return np.asarray(v, dtype=np.float32 if "float" in a.name else np.int64)
    return None


class NameMaker:
    """Unique names that never collide with the forward graph's names."""

    def __init__(self, taken: Iterable[str]):
        self.taken = set(taken)
        self.counter = itertools.count()

    def reserve(self, name: str) -> str:
        if name in self.taken:
            raise ValueError(name)
        self.taken.add(name)
        return name

    def __call__(self, base: str) -> str:
        while True:
            name = f"{base}_{next(self.counter)}"
            if name not in self.taken:
                self.taken.add(name)
                return name


def all_names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in itertools.chain(graph.input, graph.output, graph.value_info)}
    names |= {t.name for t in graph.initializer}
    for n in graph.node:
        names.update(n.input)
        names.update(n.output)
        names.add(n.name)
    return names


def graph_facts(model: onnx.ModelProto, new_name=None) -> GraphFacts:
    g = model.graph
    shapes: dict[str, tuple | None] = {}
    dims: dict[str, tuple | None] = {}
    dtypes: dict[str, int] = {}
    for vi in itertools.chain(g.input, g.value_info, g.output):
        if vi.type.HasField("tensor_type"):
            shapes[vi.name] = static_shape(vi)
            dims[vi.name] = tensor_dims(vi)
            dtypes[vi.name] = vi.type.tensor_type.elem_type
    constants: dict[str, np.ndarray] = {}
    for t in g.initializer:
        constants[t.name] = numpy_helper.to_array(t)
        shapes[t.name] = dims[t.name] = tuple(t.dims)
        dtypes[t.name] = t.data_type
    for n in g.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            v = _constant_value(n)
            if v is not None:
                constants[n.output[0]] = v
    return GraphFacts(opset=default_opset(model), shapes=shapes, dtypes=dtypes,
                      constants=constants, new_name=new_name or NameMaker(all_names(g)),
                      dims=dims)


def image_inputs(graph: onnx.GraphProto) -> list[str]:
    return [v.name for v in graph_inputs(graph)]


def downstream(graph: onnx.GraphProto, sources: Iterable[str], dtypes: dict[str, int]) -> set[str]:
    """Float tensors that depend on any of ``sources`` (sources included)."""
    reached = set(sources)
    for node in graph.node:
        if any(i in reached for i in node.input if i):
            reached.update(o for o in node.output if o and dtypes.get(o) in FLOAT_TYPES)
    return reached


def upstream(graph: onnx.GraphProto, target: str) -> set[str]:
    """Tensors ``target`` depends on (target included)."""
    reached = {target}
    for node in reversed(graph.node):
        if any(o in reached for o in node.output):
            reached.update(i for i in node.input if i)
    return reached
