"""Reverse-mode differentiation of an ONNX graph into a second graph of standard ONNX ops."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import onnx
from onnx import helper

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients._graph import (
    FLOAT_TYPES, NameMaker, all_names, downstream, graph_facts, image_inputs, upstream)
from blackbox_cam.gradients._prepare import prepare_model
from blackbox_cam.gradients.rules import RULES, Grad, supported_ops
from blackbox_cam.model.signature import ModelSignature, softmax_tail


@dataclass
class GradientModel:
    """An ONNX model computing activations and their gradients, plus the names to use.

    Inputs: ``input_name`` (the image) and ``seed_name`` ([N, num_classes], one row per image).
    Outputs: ``activation_names[L]`` (= L) and ``gradient_names[L]`` (= 'grad/L') per layer,
    the gradient of ``sum(seed * target)`` where ``target`` is ``target_name``.
    ``model`` is a plain ModelProto: extend it with :meth:`extended`.
    """

    model: onnx.ModelProto
    input_name: str
    seed_name: str
    target_name: str
    layers: list[str]
    activation_names: dict[str, str]
    gradient_names: dict[str, str]
    seed_shape: tuple = ()
    extra_outputs: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int | None:
        return self.seed_shape[-1] if self.seed_shape else None

    def session(self, backend: str = "onnxruntime", device: str = "cpu"):
        """The gradient model compiled by :func:`blackbox_cam.model.backends.compile_model`."""
        from ..model.backends import compile_model

        return compile_model(self.model, backend, device)

    def run(self, session, x: np.ndarray, seed: np.ndarray) -> dict[str, np.ndarray]:
        """Run (creating a CPU session when ``session`` is None); returns output name -> array.
        ``session``: a backend session, or an ``onnxruntime.InferenceSession``."""
        session = session or self.session()
        names = [o.name for o in (session.get_outputs() if hasattr(session, "get_outputs") else session.outputs)]
        values = session.run(names, {self.input_name: x, self.seed_name: seed})
        return dict(zip(names, values))

    def extended(self, nodes: Sequence[onnx.NodeProto], outputs: Sequence[onnx.ValueInfoProto],
                 initializers: Sequence[onnx.TensorProto] = ()) -> "GradientModel":
        """A new GradientModel whose graph also holds ``nodes``/``initializers`` and exposes
        ``outputs`` (this one is not modified)."""
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(initializers)
        model.graph.output.extend(outputs)
        return replace(self, model=model,
                       extra_outputs=self.extra_outputs + [o.name for o in outputs])


def _suggest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _pick_target(graph: onnx.GraphProto, output: str | None, use_probability: bool,
                 dtypes: dict[str, int], names: NameMaker) -> tuple[str, list[onnx.NodeProto], str | None]:
    """The tensor to differentiate, the nodes that make it, and the tensor whose shape it has.

    A Softmax tail is found by :func:`blackbox_cam.model.signature.softmax_tail`, the runtime's rule
    (through Identity/Reshape/Flatten/Squeeze). For the raw score of such a model the shape-only
    nodes after the Softmax are applied again to its input, so the target keeps the output's shape.
    """
    outputs = [o.name for o in graph.output]
    if output is None:
        output = outputs[0]
    elif output not in outputs:
        raise BlackboxCamError(f"'{output}' is not an output of the model (outputs: {outputs})")
    tail = softmax_tail(graph, output)
    if tail is not None and not use_probability:
        softmax, chain = tail
        target, head = softmax.input[0], []
        for node in chain:  # the same reshapes, on the logits
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.input[0] = target
            target = names(f"{node.output[0]}/logits")
            del copy.output[:]
            copy.output.append(target)
            copy.name = names(f"grad/logits_of/{node.name or node.op_type}")
            head.append(copy)
        return target, head, output if head else None
    if use_probability and tail is None:
        prob = f"{output}/probability"
        return prob, [helper.make_node("Softmax", [output], [prob], axis=-1,
                                       name=f"grad/softmax_of/{output}")], output
    if dtypes.get(output) not in FLOAT_TYPES:
        raise BlackboxCamError(f"output '{output}' is not a float tensor")
    return output, [], None


def build_gradient_model(model: onnx.ModelProto, layers: Sequence[str], *,
                         output: str | None = None, use_probability: bool | None = None,
                         signature: ModelSignature | None = None) -> GradientModel:
    """Build a model computing each layer's activation and the gradient of the score.

    score = sum(seed * target), target = the raw logits (the output itself, or the input of a
    final Softmax); with ``use_probability`` the probabilities (a final Softmax, appended when
    the model has none). ``signature`` (the classifier's :class:`~blackbox_cam.model.signature.ModelSignature`)
    gives the output and, unless ``use_probability`` is given, differentiates what the model
    returns, as pytorch-grad-cam does: the probability for a model ending in a Softmax.
    ``model`` is not modified; it is run through :func:`prepare_model`.
    """
    if isinstance(layers, str):
        layers = [layers]
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise BlackboxCamError("build_gradient_model needs at least one layer name")
    model = prepare_model(model)
    graph = model.graph
    names = NameMaker(all_names(graph))
    facts = graph_facts(model, names)
    if signature is not None:
        output = signature.output_name
        if use_probability is None:
            use_probability = signature.softmax
    target, head, like = _pick_target(graph, output, bool(use_probability), facts.dtypes, names)
    if like is not None:  # new head nodes: their result has the shape of the output ``like``
        facts.shapes[target] = facts.shapes.get(like)
        facts.dims[target] = facts.dims.get(like)
        facts.dtypes[target] = facts.dtypes.get(like, onnx.TensorProto.FLOAT)
        if target not in names.taken:
            names.reserve(target)
    fwd_nodes = list(graph.node) + head
    fwd = helper.make_graph(fwd_nodes, "fwd", [], [])

    known = set(facts.dtypes) | {o for n in graph.node for o in n.output}
    for layer in layers:
        if layer not in known:
            raise BlackboxCamError(
                f"layer '{layer}' is not a tensor of the model"
                f"{_suggest(layer, sorted(known))} (see candidate_layers())")
        if facts.dtypes.get(layer) not in FLOAT_TYPES:
            raise BlackboxCamError(f"layer '{layer}' is not a float tensor")
        if layer in facts.constants:
            raise BlackboxCamError(
                f"layer '{layer}' is a constant (a weight), not an activation; pick one of "
                "candidate_layers()")
    up = upstream(fwd, target)
    for layer in layers:
        if layer not in up:
            raise BlackboxCamError(
                f"layer '{layer}' does not influence the output '{target}': pick a layer "
                "before the classifier output (see candidate_layers())")
    active = downstream(fwd, layers, facts.dtypes) & up

    seed_name = names.reserve("seed" if "seed" not in names.taken else names("seed"))
    seed_shape = facts.shapes.get(target)
    contribs: dict[str, list[str]] = {target: [seed_name]}
    new_nodes: list[onnx.NodeProto] = list(head)
    new_inits: list[onnx.TensorProto] = []

    def total(name: str) -> str:
        parts = contribs[name]
        if len(parts) > 1:
            summed = names(f"grad/{name}/sum")
            new_nodes.append(helper.make_node("Sum", parts, [summed], name=names("grad/Sum")))
            contribs[name] = [summed]
        return contribs[name][0]

    for node in reversed(fwd_nodes):
        if not any(o in active for o in node.output):
            continue
        gos = [total(o) if o in contribs else None for o in node.output]
        needed = [bool(i) and i in active for i in node.input]
        if all(g is None for g in gos) or not any(needed):
            continue
        rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rule is None:
            raise BlackboxCamError(
                f"no gradient rule for op {node.op_type!r} (node '{node.name}', domain "
                f"'{node.domain or 'ai.onnx'}'); supported ops: {', '.join(supported_ops())}")
        g = Grad(node, facts, gos, needed)
        rule(g)
        new_nodes.extend(g.nodes)
        new_inits.extend(g.initializers)
        for i, inp in enumerate(node.input):
            if needed[i]:
                if i not in g.produced:
                    raise RuntimeError(f"rule {node.op_type} gave no gradient for input {i}")
                contribs.setdefault(inp, []).append(g.produced[i])

    outputs: list[onnx.ValueInfoProto] = []
    activation_names, gradient_names = {}, {}
    for layer in layers:
        grad_name = names.reserve(f"grad/{layer}") if f"grad/{layer}" not in names.taken \
            else names(f"grad/{layer}")
        new_nodes.append(helper.make_node("Identity", [total(layer)], [grad_name],
                                          name=names("grad/output")))
        shape = facts.shapes.get(layer)
        dims = None if shape is None else [d if d is not None else f"d{i}"
                                           for i, d in enumerate(shape)]
        dtype = facts.dtypes[layer]
        outputs.append(helper.make_tensor_value_info(layer, dtype, dims))
        outputs.append(helper.make_tensor_value_info(grad_name, dtype, dims))
        activation_names[layer] = layer
        gradient_names[layer] = grad_name

    seed_dims = None if seed_shape is None else [
        d if d is not None else ("N" if i == 0 else f"s{i}") for i, d in enumerate(seed_shape)]
    seed_vi = helper.make_tensor_value_info(seed_name, facts.dtypes[target], seed_dims)
    out_model = _assemble(model, new_nodes, new_inits, outputs, seed_vi)
    inputs = image_inputs(graph)
    return GradientModel(model=out_model, input_name=inputs[0], seed_name=seed_name,
                         target_name=target, layers=layers, activation_names=activation_names,
                         gradient_names=gradient_names,
                         seed_shape=tuple(seed_shape) if seed_shape else ())


def _assemble(model: onnx.ModelProto, new_nodes: list[onnx.NodeProto],
              new_inits: list[onnx.TensorProto], outputs: list[onnx.ValueInfoProto],
              seed_vi: onnx.ValueInfoProto) -> onnx.ModelProto:
    """Forward nodes + gradient nodes, pruned to what the outputs need."""
    graph = model.graph
    nodes = list(graph.node) + new_nodes
    needed = {o.name for o in outputs}
    kept: list[onnx.NodeProto] = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
            for a in node.attribute:  # nodes with subgraphs: keep their outer references
                if a.type == onnx.AttributeProto.GRAPH:
                    needed.update(i for n in a.g.node for i in n.input)
    kept.reverse()
    # keep topological order: forward nodes first (in order), then gradient nodes in emission
    order = {id(n): k for k, n in enumerate(nodes)}
    kept.sort(key=lambda n: order[id(n)])
    inits = [t for t in list(graph.initializer) + new_inits if t.name in needed]
    inputs = [v for v in graph.input if v.name in needed] + [seed_vi]
    produced = {o for n in kept for o in n.output}
    value_info = [v for v in graph.value_info if v.name in produced]
    new_graph = helper.make_graph(kept, graph.name or "gradients", inputs, outputs, inits,
                                  value_info=value_info)
    out = helper.make_model(new_graph, opset_imports=list(model.opset_import),
                            ir_version=model.ir_version, producer_name="blackbox-cam.gradients")
    return out


def activation_model(model: onnx.ModelProto, layers: Sequence[str]) -> onnx.ModelProto:
    """A forward-only model whose outputs are ``layers`` (intermediate tensors), pruned to the
    nodes they need: what a gradient-free method (EigenCAM) reads. ``model`` is not modified;
    it is run through :func:`prepare_model`."""
    model = prepare_model(model)
    facts = graph_facts(model)
    known = set(facts.dtypes) | {o for n in model.graph.node for o in n.output}
    outputs = []
    for layer in layers:
        if layer not in known or layer in facts.constants:
            raise BlackboxCamError(f"layer '{layer}' is not an activation of the model"
                                   f"{_suggest(layer, sorted(known))} (see candidate_layers())")
        shape = facts.shapes.get(layer)
        dims = None if shape is None else [d if d is not None else f"d{i}" for i, d in enumerate(shape)]
        outputs.append(helper.make_tensor_value_info(layer, facts.dtypes.get(layer, onnx.TensorProto.FLOAT), dims))
    graph = model.graph
    needed = {o.name for o in outputs}
    kept = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    kept.reverse()
    new_graph = helper.make_graph(kept, graph.name or "activations", [v for v in graph.input if v.name in needed],
                                  outputs, [t for t in graph.initializer if t.name in needed])
    return helper.make_model(new_graph, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                             producer_name="blackbox-cam.activations")
