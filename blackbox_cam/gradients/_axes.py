"""Which axis of every tensor is the batch, the channels, the height and the width.

Grad-CAM averages gradients over a feature map's spatial axes and sums over its channels, so
it must know which axis is which in every layer it may be asked about; a channels-last map
read as channels-first gives a map from the wrong axes (found on the Yahoo open_nsfw torch
export, where casts and transposes sit between every conv). The labels are read from the
graph, not from the shapes: ONNX defines Conv, pooling and normalisation ops as channels-first,
the image input's layout is the signature's, and every op in between says how it moves axes.

:func:`axis_labels` gives each tensor a tuple with one label per axis, ``"N"``, ``"C"``,
``"H"``, ``"W"`` or None (unknown: a merged or split axis, or an op this module does not
model). Labels flow forwards from the input and from every channels-first op, then backwards
from consumers into tensors still unknown, until nothing changes.
"""
from __future__ import annotations

from typing import Sequence

import onnx

from blackbox_cam.gradients.rules import GraphFacts

Labels = tuple  # tuple[str | None, ...]
NCHW: Labels = ("N", "C", "H", "W")
NHWC: Labels = ("N", "H", "W", "C")

#: Ops ONNX defines on [N, C, H, W]: their first input and output are channels-first.
CHANNELS_FIRST = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool",
                  "GlobalMaxPool", "GlobalLpPool", "BatchNormalization", "InstanceNormalization", "LRN",
                  "GroupNormalization", "MaxUnpool", "DepthToSpace", "SpaceToDepth", "MaxRoiPool"}
#: Ops whose output has the axes of their first input (values or extents may change, roles do not).
SAME_AXES = {"Identity", "Cast", "CastLike", "Dropout", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid",
             "HardSwish", "Tanh", "Clip", "Elu", "Selu", "Celu", "Gelu", "Erf", "Exp", "Log", "Neg", "Abs",
             "Sqrt", "Reciprocal", "Softplus", "Softsign", "Mish", "Swish", "ThresholdedRelu", "Shrink",
             "Round", "Floor", "Ceil", "Sign", "Pad", "Slice", "Softmax", "LogSoftmax", "Hardmax",
             "LayerNormalization", "Resize", "Upsample", "Sin", "Cos", "Not", "IsNaN", "IsInf"}
#: Broadcasting ops: the output has the axes of an input of the output's rank.
BROADCAST = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Greater",
             "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "Mod", "BitShift", "Concat"}
REDUCE = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def int_list(node: onnx.NodeProto, facts: GraphFacts, name: str, position: int) -> list[int] | None:
    """An ints argument given as attribute ``name`` (old opsets) or constant input ``position``."""
    v = _attr(node, name)
    if v is not None:
        return [int(i) for i in v]
    if len(node.input) > position and node.input[position] in facts.constants:
        return [int(i) for i in facts.constants[node.input[position]].reshape(-1)]
    return None


def reduced_axes(node: onnx.NodeProto, facts: GraphFacts, rank: int) -> list[int] | None:
    """The axes a Reduce* node reduces (all when none are given), normalised to [0, rank)."""
    axes = int_list(node, facts, "axes", 1)
    if axes is None:
        if len(node.input) > 1 and node.input[1]:
            return None  # computed at run time
        return [] if _attr(node, "noop_with_empty_axes", 0) else list(range(rank))
    return sorted(a % rank for a in axes)


def _reshaped(src: Labels, din: Sequence, dout: Sequence) -> Labels | None:
    """Labels through a Reshape from dims ``din`` to ``dout``: an axis keeps its label when it
    maps one to one (same extent, same boundaries of the running products); merged, split or
    unknown extents get None."""
    if din is None or dout is None:
        return None
    if len(din) == len(dout) and all(a == b for a, b in zip(din, dout)):
        return src
    if not din or not dout or din[0] != dout[0] or any(not isinstance(d, int) for d in list(din[1:]) + list(dout[1:])):
        return None
    out: list = [src[0]]
    i, j, pi, pj = 1, 1, 1, 1
    while j < len(dout):
        if i < len(din) and pi == pj and din[i] == dout[j]:
            out.append(src[i] if pi == 1 else None)
            pi, pj, i, j = pi * din[i], pj * dout[j], i + 1, j + 1
            continue
        if pj <= pi or i >= len(din):
            pj *= dout[j]
            out.append(None)
            j += 1
        else:
            pi *= din[i]
            i += 1
    return tuple(out)


def _forward(node: onnx.NodeProto, labels: dict, facts: GraphFacts) -> Labels | None:
    """The first output's labels from the inputs' (None when this op or its inputs do not say)."""
    op = node.op_type
    out = node.output[0]
    rank = len(facts.dims.get(out) or ()) if facts.dims.get(out) is not None else None
    first = labels.get(node.input[0]) if node.input else None
    if op in CHANNELS_FIRST:
        return NCHW if rank == 4 else None
    if op in SAME_AXES:
        return first
    if op in BROADCAST:
        known = [labels[i] for i in node.input if i in labels and len(labels[i]) == rank]
        full = [lab for lab, i in zip(known, node.input) if facts.dims.get(i) == facts.dims.get(out)]
        return (full or known or [None])[0]
    if op == "Transpose" and first is not None:
        perm = _attr(node, "perm") or list(range(len(first)))[::-1]
        return tuple(first[p] for p in perm)
    if op in REDUCE and first is not None:
        axes = reduced_axes(node, facts, len(first))
        if axes is None:
            return None
        if _attr(node, "keepdims", 1):
            return first
        return tuple(lab for k, lab in enumerate(first) if k not in axes)
    if op == "Squeeze" and first is not None:
        axes = int_list(node, facts, "axes", 1)
        d = facts.dims.get(node.input[0])
        if axes is None and d is not None:
            axes = [k for k, v in enumerate(d) if v == 1]
        return None if axes is None else tuple(l for k, l in enumerate(first) if k not in {a % len(first) for a in axes})
    if op == "Unsqueeze" and first is not None and rank is not None:
        axes = int_list(node, facts, "axes", 1)
        if axes is None:
            return None
        axes = {a % rank for a in axes}
        rest = iter(first)
        return tuple(None if k in axes else next(rest) for k in range(rank))
    if op in ("Reshape", "Flatten") and first is not None:
        return _reshaped(first, facts.dims.get(node.input[0]), facts.dims.get(out))
    if op in ("MatMul", "Gemm") and first is not None and len(node.input) > 1 and node.input[1] in facts.constants:
        return first  # a linear map of the last axis (a channels-last 1x1 conv): roles kept
    return None


def _backward(node: onnx.NodeProto, labels: dict, facts: GraphFacts) -> dict[str, Labels]:
    """Labels an output (or the op's definition) gives to inputs still unknown."""
    op = node.op_type
    if not node.input or not node.output:
        return {}
    src, out = node.input[0], labels.get(node.output[0])
    if op in CHANNELS_FIRST and len(facts.dims.get(src) or ()) == 4:
        return {src: NCHW}
    if out is None:
        return {}
    if op in SAME_AXES:
        return {src: out}
    if op in BROADCAST:
        d = facts.dims.get(node.output[0])
        return {i: out for i in node.input if i and facts.dims.get(i) == d}
    if op == "Transpose":
        perm = _attr(node, "perm") or list(range(len(out)))[::-1]
        back: list = [None] * len(out)
        for k, p in enumerate(perm):
            back[p] = out[k]
        return {src: tuple(back)}
    return {}


def axis_labels(graph: onnx.GraphProto, facts: GraphFacts, inputs: dict[str, Labels]) -> dict[str, Labels]:
    """Labels of every tensor of known rank; ``inputs`` gives the image input's (from the signature)."""
    labels: dict[str, Labels] = dict(inputs)
    for _ in range(4):
        before = dict(labels)
        for node in graph.node:
            if node.output and node.output[0] and node.output[0] not in labels:
                lab = _forward(node, labels, facts)
                if lab is not None and all(l is None for l in lab):
                    lab = None
                if lab is not None:
                    for o in node.output:
                        if o and facts.dims.get(o) is not None and len(facts.dims[o]) == len(lab):
                            labels[o] = lab
        for node in reversed(graph.node):
            for name, lab in _backward(node, labels, facts).items():
                if name and name not in labels and name not in facts.constants and \
                        len(facts.dims.get(name) or ()) == len(lab):
                    labels[name] = lab
        if labels == before:
            break
    return labels


def layout_of(labels: Labels | None) -> str | None:
    """``NCHW`` or ``NHWC`` for a feature map's labels, else None."""
    if labels == NCHW:
        return "NCHW"
    if labels == NHWC:
        return "NHWC"
    return None
