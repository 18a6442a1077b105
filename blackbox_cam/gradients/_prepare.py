"""Load a model, bring it to a supported opset, and infer shapes."""
from __future__ import annotations

import os

import numpy as np
import onnx
import onnx.inliner
import onnx.shape_inference
import onnx.version_converter

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients._graph import default_opset

TARGET_OPSET = 17  # ReduceSum/Split/Unsqueeze axes as inputs, ScatterElements reduction='add'
_ORT_DOMAINS = {"com.microsoft", "com.microsoft.nchwc", "com.microsoft.mlfeaturizers"}


def prepare_model(model: onnx.ModelProto | str | os.PathLike, signature=None) -> onnx.ModelProto:
    """Return a new, shape-inferred copy of ``model`` at opset >= 17.

    Models below opset 17 are converted with ``onnx.version_converter``; newer ones are kept.
    Local functions are inlined. Files optimised by ONNX Runtime (com.microsoft ops) are refused:
    pass the original export. The input model is not modified. With the classifier's
    ``signature`` (:class:`~blackbox_cam.model.signature.ModelSignature`), a symbolic height and
    width of the image input are set to the size it is fed at, so that every feature map's
    height and width are known.
    """
    if isinstance(model, (str, os.PathLike)):
        try:
            model = onnx.load(os.fspath(model))
        except Exception as exc:  # noqa: BLE001 - onnx raises many kinds
            raise BlackboxCamError(f"cannot read ONNX model '{os.fspath(model)}': {exc}") from exc
    elif isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
    else:
        raise BlackboxCamError(
            f"prepare_model needs an onnx.ModelProto or a path, not {type(model).__name__}")
    foreign = sorted({n.domain for n in model.graph.node} & _ORT_DOMAINS)
    if foreign:
        raise BlackboxCamError(
            f"the model uses {', '.join(foreign)} ops: it looks optimised by ONNX Runtime; "
            "pass the original exported .onnx file instead")
    if signature is not None:
        _fix_spatial_dims(model, signature)
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    _sort_nodes(model)
    opset = default_opset(model)
    if opset < TARGET_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, TARGET_OPSET)
        except Exception as exc:  # noqa: BLE001
            raise BlackboxCamError(
                f"cannot convert the model from opset {opset} to {TARGET_OPSET}: {exc}; "
                "re-export it at opset >= 17") from exc
    _fold_small_constants(model)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001
        raise BlackboxCamError(f"shape inference failed on the model: {exc}") from exc
    _fill_symbolic_dims(model)
    return model


def _sort_nodes(model: onnx.ModelProto) -> None:
    """Put the nodes in topological order, in place, when they are not (stable: nodes keep their
    order where they can). ONNX requires it, ONNX Runtime does not: onnxconverter-common's
    float16 conversion appends the input's Cast at the end of the graph, and every graph walk
    here reads the nodes in order."""
    graph = model.graph
    nodes = list(graph.node)
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}

    def needs(node: onnx.NodeProto) -> set[str]:
        names = set(node.input)
        for a in node.attribute:  # a subgraph's references to outer tensors
            if a.type == onnx.AttributeProto.GRAPH:
                inner = {o for n in a.g.node for o in n.output} | {i.name for i in a.g.input} | \
                        {t.name for t in a.g.initializer}
                names |= {i for n in a.g.node for i in n.input if i not in inner}
        return names

    produced = {o for n in nodes for o in n.output}
    seen = set(available)
    for n in nodes:
        if needs(n) & produced - seen:
            break
        seen.update(n.output)
    else:  # already in order: nothing to do
        return
    order, pending, done = [], list(nodes), set(available)
    while pending:
        rest = []
        for n in pending:
            if needs(n) & produced <= done:
                order.append(n)
                done.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle or a missing tensor: leave the graph as it is
            return
        pending = rest
    del graph.node[:]
    graph.node.extend(order)


def _fill_symbolic_dims(model: onnx.ModelProto) -> None:
    """Fill the dims ONNX's shape inference left unknown with ONNX Runtime's symbolic shape
    inference, which computes through ``Shape -> Gather -> ... -> Pad`` chains (the TF-'SAME'
    pads of a converted open_nsfw leave 326 of its 333 maps without a height and width
    otherwise). Only missing dims are filled; nothing known is changed. Best effort: the
    listing and layouts do not depend on it."""
    def dims(vi):
        return vi.type.tensor_type.shape.dim
    missing = {vi.name: vi for vi in model.graph.value_info
               if any(not d.HasField("dim_value") for d in dims(vi)[1:])}
    if not missing:
        return
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # noqa: BLE001 - an optional refinement; ONNX's own shapes stand
        return
    for vi in inferred.graph.value_info:
        mine = missing.get(vi.name)
        if mine is None or len(dims(mine)) != len(dims(vi)):
            continue
        for ours, theirs in zip(list(dims(mine))[1:], list(dims(vi))[1:]):
            if not ours.HasField("dim_value") and theirs.HasField("dim_value") and theirs.dim_value > 0:
                ours.dim_value = theirs.dim_value


def _fix_spatial_dims(model: onnx.ModelProto, signature) -> None:
    """Set the image input's symbolic height and width to ``signature.input_size``."""
    vi = next((i for i in model.graph.input if i.name == signature.input_name), None)
    if vi is None or len(vi.type.tensor_type.shape.dim) != 4:
        return
    axes = (2, 3) if signature.layout == "NCHW" else (1, 2)
    for axis, size in zip(axes, signature.input_size):
        d = vi.type.tensor_type.shape.dim[axis]
        if not d.HasField("dim_value"):
            d.dim_value = int(size)


#: Ops exporters use to compute pads, shapes and axes from constants (torch's F.pad at opset
#: >= 11 is ConstantOfShape, Concat, Reshape, Slice, Transpose, Cast): folded so that shape
#: inference, which does not propagate values through all of them, knows every map's size.
_FOLDABLE = {"ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast", "Unsqueeze", "Squeeze",
             "Gather", "Add", "Sub", "Mul", "Div", "Neg", "Range", "Expand", "Identity"}


def _fold_small_constants(model: onnx.ModelProto) -> None:
    """Replace, in place, each :data:`_FOLDABLE` node whose inputs are all constants and whose
    result is small (at most 64 values) by a Constant node holding that result."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for k, node in enumerate(graph.node):
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            try:
                values[node.output[0]] = ReferenceEvaluator(helper.make_model(helper.make_graph(
                    [node], "c", [], [helper.make_tensor_value_info(node.output[0], 0, None)]),
                    opset_imports=model.opset_import)).run(None, {})[0]
            except Exception:  # noqa: BLE001 - left to shape inference
                pass
            continue
        if (node.op_type not in _FOLDABLE or node.domain not in ("", "ai.onnx") or len(node.output) != 1
                or not node.input or not all(i in values for i in node.input if i)):
            continue
        ins = [i for i in node.input if i]
        if any(values[i].size > 64 for i in ins):
            continue
        try:
            fn = helper.make_model(helper.make_graph(
                [node], "f", [helper.make_tensor_value_info(i, 0, None) for i in ins],
                [helper.make_tensor_value_info(node.output[0], 0, None)]), opset_imports=model.opset_import)
            out = np.asarray(ReferenceEvaluator(fn).run(None, {i: values[i] for i in ins})[0])
        except Exception:  # noqa: BLE001 - an op the reference cannot run: left as it is
            continue
        if out.size > 64:
            continue
        values[node.output[0]] = out
        graph.node[k].CopyFrom(helper.make_node("Constant", [], [node.output[0]], name=node.name,
                                                value=numpy_helper.from_array(out, node.output[0])))
