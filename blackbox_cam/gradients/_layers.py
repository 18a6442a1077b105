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


def node_scope(node: onnx.NodeProto) -> str:
    """A readable scope: the exporter's module path ('/blocks/6/conv') or the node name."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            parts = [p.strip(" '\"") for p in prop.value.strip("[]").split(",")]
            parts = [p for p in parts if p]
            if parts:
                return "/" + "/".join(parts[-1:] if "." in parts[-1] else parts[1:] or parts)
    name = node.name
    if name.startswith("/") and "/" in name[1:]:
        return name.rsplit("/", 1)[0]
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


def candidate_layers(model: onnx.ModelProto) -> list[LayerInfo]:
    """Float intermediate tensors that influence the first output, in graph order.

    The default (``is_default``) is the input of the last global spatial average (a
    GlobalAveragePool or a ReduceMean over axes 2, 3) feeding the output, or, without one, the
    last 4-D tensor. Pass a model from :func:`prepare_model` so that shapes are known.
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
        four_d = [l.name for l in layers if l.shape is not None and len(l.shape) == 4]
        default = four_d[-1] if four_d else None
    return [LayerInfo(l.name, l.op_type, l.shape, l.scope, l.name == default) for l in layers]
