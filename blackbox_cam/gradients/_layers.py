"""Which intermediate tensors can be explained, what each one is, and which one is the default.

Every float tensor on the way from the image to the scores gets its axes' roles
(:mod:`blackbox_cam.gradients._axes`), hence its layout (NCHW or NHWC), its height x width and
its role: a feature ``map``, a ``pooled`` map (1 x 1), a ``vector``, or ``other`` (an axis the
graph does not name); in a vision transformer also ``tokens``, ``attention`` and
``attention-internal`` (:mod:`blackbox_cam.gradients._tokens`). Pure casts and shape plumbing (Cast, Identity, Transpose, Reshape, ...)
are marked ``plumbing``: the same values under another name, which ``blackbox-cam layers``
hides unless ``--all``.

The default layer is the map the classifier's head reads: the input of its global pooling
(GlobalAveragePool/GlobalMaxPool, a Reduce over exactly the spatial axes in either layout, or
an AveragePool/MaxPool whose window is the whole map), or, in a head without pooling, the map
that a Flatten/Reshape turns into the classifier's vector (VGG). A pooling whose result is
broadcast back onto a map (squeeze-and-excitation gates) is not the head's. When the head reads
no map, there is no default and the white-box methods say so, naming the last maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import onnx

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients._axes import NCHW, NHWC, REDUCE, _attr, axis_labels, layout_of, reduced_axes
from blackbox_cam.gradients._graph import (
    FLOAT_TYPES, downstream, graph_facts, image_inputs, upstream)
from blackbox_cam.gradients._tokens import mark_tokens, token_facts
from blackbox_cam.model.signature import detect_layout


@dataclass(frozen=True)
class LayerInfo:
    """A float intermediate tensor that influences the model's output."""

    name: str
    op_type: str
    shape: tuple | None
    scope: str
    is_default: bool = False
    layout: str | None = None  # NCHW or NHWC for a map, else None
    role: str = "other"  # map, pooled, vector or other (see the module docstring)
    plumbing: bool = False  # a cast or shape op's output: the same values under another name

    @property
    def hw(self) -> tuple | None:
        """(height, width) of a map (None entries where symbolic), else None."""
        if self.layout is None or self.shape is None:
            return None
        return (self.shape[2], self.shape[3]) if self.layout == "NCHW" else (self.shape[1], self.shape[2])


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


#: Ops that pass their input's values on unchanged (or cast) under another name or shape.
PLUMBING = {"Cast", "CastLike", "Identity", "Dropout", "Transpose", "Reshape", "Flatten", "Squeeze",
            "Unsqueeze", "Expand"}


def _role(labels, shape) -> str:
    layout = layout_of(labels)
    if layout is not None:
        hw = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
        return "pooled" if hw == (1, 1) else "map"
    if labels is not None and len(labels) <= 2 and labels[0] == "N":
        return "vector"
    return "other"


def _head_pool(node: onnx.NodeProto, labels: dict, facts) -> str | None:
    """The map ``node`` pools over all of its height and width (or flattens into a vector), or None."""
    shapes = facts.shapes
    src = node.input[0] if node.input else None
    lab = labels.get(src)
    if layout_of(lab) is None or _role(lab, shapes.get(src) or (None,) * 4) != "map":
        return None
    op = node.op_type
    if op in ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"):
        return src
    if op in REDUCE:
        axes = reduced_axes(node, facts, len(lab))
        return src if axes is not None and {lab[a] for a in axes} == {"H", "W"} else None
    if op in ("AveragePool", "MaxPool", "LpPool"):
        kernel, shape = _attr(node, "kernel_shape"), shapes.get(src)
        pads = _attr(node, "pads") or [0] * 4
        return src if shape is not None and list(kernel or ()) == list(shape[2:]) and not any(pads) else None
    if op in ("Flatten", "Reshape"):
        out = shapes.get(node.output[0])
        return src if out is not None and len(out) == 2 else None
    return None


def _reaches_a_map(start: str, consumers: dict, labels: dict, shapes: dict) -> bool:
    """Whether a map depends on ``start`` (a gate broadcast back onto a feature map)."""
    seen, todo = {start}, [start]
    while todo:
        t = todo.pop()
        for node in consumers.get(t, []):
            for o in node.output:
                if o and o not in seen:
                    if _role(labels.get(o), shapes.get(o) or (None,) * 4) == "map":
                        return True
                    seen.add(o)
                    todo.append(o)
    return False


def _through_plumbing(name: str, producer: dict, consumers: dict) -> str:
    """The tensor ``name`` copies through a chain of plumbing ops, each its input's only
    consumer (so the gradient there is the same)."""
    while name in producer:
        node = producer[name]
        src = node.input[0] if node.input else None
        if node.op_type not in PLUMBING or not src or len(consumers.get(src, [])) != 1 or src not in producer:
            return name
        name = src
    return name


def _default(graph: onnx.GraphProto, active: set[str], labels: dict, facts) -> str | None:
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    read = None
    for node in graph.node:
        src = _head_pool(node, labels, facts)
        if src is not None and src in active and not _reaches_a_map(node.output[0], consumers, labels,
                                                                       facts.shapes):
            read = src
    return None if read is None else _through_plumbing(read, producer, consumers)


def input_labels(graph: onnx.GraphProto, layout: str | None = None) -> dict:
    """The image input's axis labels from ``layout`` (the signature's) or its dims."""
    out = {}
    for name in image_inputs(graph):
        vi = next(v for v in graph.input if v.name == name)
        d = [x.dim_value if x.HasField("dim_value") else x.dim_param for x in vi.type.tensor_type.shape.dim]
        lay = layout or (detect_layout(d) if len(d) == 4 else None)
        if lay in ("NCHW", "NHWC") and len(d) == 4:
            out[name] = NCHW if lay == "NCHW" else NHWC
    return out


def candidate_layers(model: onnx.ModelProto, layout: str | None = None) -> list[LayerInfo]:
    """Float intermediate tensors that influence the first output, in graph order, with their
    layout and role; ``is_default`` marks the map the classifier's head reads (see the module
    docstring). ``layout`` is the image input's (the signature's); detected from its dims
    when None. Pass a model from :func:`prepare_model` so that shapes are known.
    """
    graph = model.graph
    if not graph.output:
        raise BlackboxCamError("the model has no outputs")
    facts = graph_facts(model)
    labels = axis_labels(graph, facts, input_labels(graph, layout))
    active = downstream(graph, image_inputs(graph), facts.dtypes) & upstream(graph,
                                                                             graph.output[0].name)
    default = _default(graph, active, labels, facts)
    layers: list[LayerInfo] = []
    for node in graph.node:
        for out in node.output:
            if out in active and facts.dtypes.get(out) in FLOAT_TYPES:
                shape = facts.shapes.get(out)
                lab = labels.get(out)
                role = _role(lab, shape) if shape is not None else "other"
                layers.append(LayerInfo(out, node.op_type, shape, node_scope(node), out == default,
                                        layout_of(lab) if role in ("map", "pooled") else None, role,
                                        node.op_type in PLUMBING))
    # -- issue 19 hook: a transformer's token maps, attention and default (gradients/_tokens.py)
    return mark_tokens(layers, token_facts(model))
