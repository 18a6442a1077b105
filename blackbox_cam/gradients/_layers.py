"""Which intermediate tensors can be explained, and which one is the default."""
from __future__ import annotations

from dataclasses import dataclass

import onnx

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients._graph import (
    FLOAT_TYPES, downstream, graph_facts, image_inputs, upstream)


@dataclass(frozen=True)
class LayerInfo:
    """A float intermediate tensor that influences the model's output."""

    name: str
    op_type: str
    shape: tuple | None
    scope: str
    is_default: bool = False


def _module_path(parts: list[str]) -> str:
    """'/block1/body/0/0' from ['block1', 'body', 'body.0', 'body.0.0'] (a part that extends the
    previous one with '.x' contributes only 'x')."""
    out: list[str] = []
    prev = None
    for p in parts:
        if not p:
            continue
        if prev and p.startswith(prev + "."):
            out.extend(p[len(prev) + 1:].split("."))
        else:
            out.extend(p.split("."))
        prev = p
    return "/" + "/".join(out)


def node_scope(node: onnx.NodeProto) -> str:
    """A readable scope from the exporter: the torch module path ('/blocks/6/conv') taken from
    the dynamo exporter's name_scopes metadata or the TorchScript exporter's node name, else the
    node name."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            parts = [p.strip(" '\"") for p in prop.value.strip("[]").split(",")]
            return _module_path(parts[:-1]) if len(parts) > 1 else "/"
    name = node.name
    if name.startswith("/") and "/" in name[1:]:
        return _module_path(name.strip("/").split("/")[:-1])
    return name or node.op_type


def _is_spatial_mean(node: onnx.NodeProto, facts) -> bool:
    if node.op_type == "GlobalAveragePool":
        return True
    if node.op_type != "ReduceMean":
        return False
    shape = facts.shapes.get(node.input[0])
    if shape is None or len(shape) != 4:
        return False
    axes = None
    if len(node.input) > 1 and node.input[1] in facts.constants:
        axes = facts.constants[node.input[1]].reshape(-1).tolist()
    for a in node.attribute:
        if a.name == "axes":
            axes = list(a.ints)
    return axes is not None and sorted(x % 4 for x in axes) == [2, 3]


_POINTWISE = {"Relu", "Clip", "HardSwish", "Sigmoid", "HardSigmoid", "LeakyRelu", "PRelu",
              "BatchNormalization", "Add", "Mul", "Tanh", "Identity", "Dropout", "Elu", "Gelu"}


def _after_last_conv(graph: onnx.GraphProto, active: set[str], facts) -> str | None:
    """Fallback default: the output of the last active 4-D Conv, followed through the pointwise
    ops (activation, BN, residual add) that keep its shape."""
    default = None
    for node in graph.node:
        if node.op_type == "Conv" and node.output[0] in active:
            shape = facts.shapes.get(node.output[0])
            if shape is not None and len(shape) == 4:
                default = node.output[0]
    if default is None:
        return None
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    while True:
        users = consumers.get(default, [])
        if len(users) != 1 or users[0].op_type not in _POINTWISE:
            return default
        out = users[0].output[0]
        if out not in active or facts.shapes.get(out) != facts.shapes.get(default):
            return default
        default = out


def candidate_layers(model: onnx.ModelProto) -> list[LayerInfo]:
    """Float intermediate tensors that influence the first output, in graph order.

    The default (``is_default``) is the input of the last global spatial average (a
    GlobalAveragePool or a ReduceMean over axes 2, 3) feeding the output, or, without one, the
    output of the last 4-D Conv followed through pointwise ops of the same shape. Pass a model
    from :func:`prepare_model` so that shapes are known.
    """
    graph = model.graph
    if not graph.output:
        raise BlackboxCamError("the model has no outputs")
    facts = graph_facts(model)
    active = downstream(graph, image_inputs(graph), facts.dtypes) & upstream(graph,
                                                                             graph.output[0].name)
    layers: list[LayerInfo] = []
    default = None
    for node in graph.node:
        if _is_spatial_mean(node, facts) and node.input[0] in active:
            default = node.input[0]
        for out in node.output:
            if out in active and facts.dtypes.get(out) in FLOAT_TYPES:
                layers.append(LayerInfo(out, node.op_type, facts.shapes.get(out),
                                        node_scope(node)))
    if default is None:
        default = _after_last_conv(graph, active, facts)
    return [LayerInfo(info.name, info.op_type, info.shape, info.scope, info.name == default)
            for info in layers]
