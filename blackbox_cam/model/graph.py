"""Graph helpers: one implementation of each rule about an ONNX graph's tensors and nodes.

Every reader uses these (the model reader :mod:`.signature`, the detector layouts in
:mod:`.detections`, the gradient package): dims of a value, the real inputs, producers and
consumers, and the Softmax/Sigmoid tail behind shape-only ops.
"""
from __future__ import annotations

import onnx

#: Ops that only move or relabel values: a Softmax followed by these still gives probabilities.
SHAPE_ONLY = ("Identity", "Reshape", "Flatten", "Squeeze")


def dims(vi: onnx.ValueInfoProto) -> tuple | None:
    """Dims of a tensor: ints, symbols (str) or None for anonymous ones; None if the rank is unknown."""
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)


def static_shape(vi: onnx.ValueInfoProto) -> tuple | None:
    """:func:`dims` with every non-integer dim as None."""
    d = dims(vi)
    return None if d is None else tuple(x if isinstance(x, int) else None for x in d)


def value_dims(graph: onnx.GraphProto, name: str) -> tuple | None:
    """:func:`dims` of the tensor called ``name`` (value_info, output or input), or None."""
    for vi in list(graph.value_info) + list(graph.output) + list(graph.input):
        if vi.name == name:
            return dims(vi)
    return None


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The graph's real inputs (initializers listed as inputs by old exporters left out)."""
    inits = {i.name for i in graph.initializer}
    return [i for i in graph.input if i.name not in inits]


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Tensor name -> the node that makes it."""
    return {o: n for n in graph.node for o in n.output}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that take it, in graph order."""
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def softmax_tail(graph: onnx.GraphProto, output: str,
                 op: str = "Softmax") -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    """The ``op`` node (Softmax, or Sigmoid for binary heads) that makes ``output`` and the
    :data:`SHAPE_ONLY` nodes after it (in graph order), or None when ``output`` is not its result."""
    prod = producers(graph)
    chain: list[onnx.NodeProto] = []
    node = prod.get(output)
    while node is not None and node.op_type in SHAPE_ONLY:
        chain.append(node)
        node = prod.get(node.input[0])
    if node is None or node.op_type != op:
        return None
    return node, chain[::-1]
