"""Vision transformers in the graph: token tensors, their patch grid, attention, the default layer.

A ViT turns the image into a grid of patch tokens with a patch-embedding Conv (``[N, C, h, w]``)
followed by a flatten and a transpose (``[N, h*w, C]``), then usually prepends extra tokens
(class, distillation, register tokens) with a Concat on the token axis. Every block keeps the
``[N, a + h*w, C]`` shape, so a block output is a feature map in disguise: dropping the ``a``
extra tokens and reshaping to ``[N, h, w, C]`` gives the map pytorch-grad-cam's
``reshape_transform`` builds by hand ([1]_). Swin-style models keep ``[N, h, w, C]`` tensors
(channels last) and halve the grid at each patch merging.

:func:`token_facts` reads all of that from the graph once: the grid (the patch-embedding Conv's
output size), the extra tokens (from the Concat that adds them), which tensors are token maps,
the attention probabilities (Softmax over the tokens, one per block), the attention internals
(queries, keys, values, scores: not feature maps), and the default layer with the reason.

The default for a transformer ([2]_): when the head reads only the extra tokens (``x[:, 0]``
after a final LayerNorm), nothing after the last attention mixes tokens, so every patch token of
the last block's output gets a zero gradient and Grad-CAM is blank; the default is then the
input of the last attention (the last block's ``norm1``), as pytorch-grad-cam's ViT guide
recommends. When the head pools all tokens (mean pooling, Swin), it is the tensor pooled, like
the input of a CNN's global average pool.

References
----------
.. [1] J. Gildenblat and contributors, pytorch-grad-cam, ``usage_examples/vit_example.py`` and
   the tutorial "How does it work with Vision Transformers",
   https://jacobgil.github.io/pytorchgradcam/docs/vision_transformers.html
.. [2] A. Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
   Recognition at Scale", ICLR 2021 (arXiv:2010.11929).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import onnx

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients._graph import FLOAT_TYPES, graph_facts, image_inputs
from blackbox_cam.model.signature import consumers, producers

_PASS = {"Reshape", "Flatten", "Transpose", "Identity", "Add", "Dropout", "LayerNormalization",
         "Squeeze", "Unsqueeze"}


@dataclass(frozen=True)
class TokenGrid:
    """Where the patch tokens are in a token tensor: ``extra`` tokens first, then ``h x w``
    patches in row-major order (``layout`` ``NTC``: ``[N, extra + h*w, C]``), or an
    ``[N, h, w, C]`` tensor (``NHWC``, Swin-style)."""

    h: int
    w: int
    extra: int = 0
    layout: str = "NTC"

    @property
    def tokens(self) -> int:
        return self.extra + self.h * self.w

    def label(self) -> str:
        """``tokens 1+8x8``, ``tokens 8x8`` or ``tokens 8x8 NHWC``."""
        grid = f"{self.h}x{self.w}"
        if self.layout == "NHWC":
            return f"tokens {grid} NHWC"
        return f"tokens {self.extra}+{grid}" if self.extra else f"tokens {grid}"


@dataclass(frozen=True)
class TokenFacts:
    """What :func:`token_facts` read: empty (``grid is None``) for a model without tokens."""

    grid: TokenGrid | None = None
    source: str = ""                               # "graph" or "--tokens"
    maps: dict[str, TokenGrid] = field(default_factory=dict)   # token tensors -> their grid
    attention: tuple[str, ...] = ()                # attention probabilities, one per block
    internals: frozenset[str] = frozenset()        # q, k, v, scores, probabilities, heads
    default: str | None = None
    why: str = ""
    head_reads: str = ""                           # "extra tokens", "all tokens" or ""

    def role(self, name: str) -> str:
        """``tokens``, ``attention`` (probabilities), ``internal`` or ``""``."""
        if name in self.maps:
            return "tokens"
        if name in self.attention:
            return "attention"
        return "internal" if name in self.internals else ""


def parse_tokens(text: str | None) -> TokenGrid | None:
    """``"8,8"`` or ``"8,8,1"`` (H, W, extra tokens before the grid) -> :class:`TokenGrid`;
    ``auto``/None -> None (read from the graph)."""
    if text is None or str(text).strip().lower() in ("", "auto"):
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) not in (2, 3) or min(nums[:2], default=0) < 1 or (len(nums) == 3 and nums[2] < 0):
        raise BlackboxCamError(f"--tokens {text!r}: give the patch grid as H,W or H,W,EXTRA (extra tokens "
                               "before the grid, e.g. 14,14,1 for a ViT with a class token), or auto")
    return TokenGrid(nums[0], nums[1], nums[2] if len(nums) == 3 else 0)


def _perm(node: onnx.NodeProto) -> list[int] | None:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


def _attr(node: onnx.NodeProto, name: str, default=None):
    a = next((a for a in node.attribute if a.name == name), None)
    return default if a is None else onnx.helper.get_attribute_value(a)


def _patch_grid(graph, facts, takers) -> tuple[TokenGrid, str] | None:
    """The last Conv whose ``[N, C, h, w]`` output is turned into tokens: Reshape/Flatten then
    ``Transpose(perm=[0, 2, 1])`` (``NTC``), or ``Transpose(perm=[0, 2, 3, 1])`` after a
    patchifying Conv (``NHWC``, :func:`_patchify`).
    Returns the grid (no extra tokens yet) and the first token tensor."""
    found = None
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        shape = facts.shapes.get(node.output[0])
        if shape is None or len(shape) != 4 or None in shape[2:]:
            continue
        h, w = shape[2:]
        frontier, flat = [node.output[0]], False
        for _ in range(4):
            nxt = []
            for t in frontier:
                for n in takers.get(t, []):
                    if n.op_type in ("Reshape", "Flatten"):
                        out = facts.shapes.get(n.output[0])
                        if out is None or len(out) == 3:
                            flat = True
                            nxt.append(n.output[0])
                    elif n.op_type == "Transpose":
                        p = _perm(n)
                        if flat and p == [0, 2, 1]:
                            found = (TokenGrid(h, w, 0, "NTC"), n.output[0])
                        elif not flat and p == [0, 2, 3, 1] and h * w > 1 and _patchify(node):
                            found = (TokenGrid(h, w, 0, "NHWC"), n.output[0])
                    elif n.op_type in ("Identity", "Dropout"):
                        nxt.append(n.output[0])
            frontier = nxt
    return found


def _patchify(conv: onnx.NodeProto) -> bool:
    """A patch embedding: non-overlapping patches, kernel = stride > 1 (Swin's). A channels-last
    CNN export (tf2onnx: Conv then Transpose(0, 2, 3, 1)) has ordinary convolutions instead."""
    kernel, strides = _attr(conv, "kernel_shape"), _attr(conv, "strides")
    return bool(kernel) and list(kernel) == list(strides or []) and min(kernel) > 1


def _extra_tokens(graph, facts, takers, start: str, hw: int) -> int:
    """Tokens a Concat on the token axis puts before the patch tokens (class, distillation,
    register tokens), following ``start`` through position embeddings, norms and dropout."""
    frontier, seen = [start], {start}
    for _ in range(6):
        nxt = []
        for t in frontier:
            for n in takers.get(t, []):
                if n.op_type == "Concat" and _attr(n, "axis", 0) in (1, -2):
                    before = list(n.input).index(t)
                    sizes = [facts.shapes.get(i) for i in n.input[:before]]
                    if all(s is not None and len(s) == 3 and s[1] is not None for s in sizes):
                        return sum(s[1] for s in sizes)
                    out = _first_token_count(facts, takers, n.output[0])
                    return max(out - hw, 0) if out is not None and before else 0
                if n.op_type in ("Add", "Dropout", "Identity", "LayerNormalization") and n.output[0] not in seen:
                    seen.add(n.output[0])
                    nxt.append(n.output[0])
        frontier = nxt
    return 0


def _first_token_count(facts, takers, start: str) -> int | None:
    """The first known token count (dim 1 of a 3-D tensor) at or after ``start``."""
    frontier = [start]
    for _ in range(4):
        nxt = []
        for t in frontier:
            s = facts.shapes.get(t)
            if s is not None and len(s) == 3 and s[1] is not None:
                return s[1]
            nxt += [o for n in takers.get(t, []) if n.op_type in _PASS for o in n.output]
        frontier = nxt
    return None


def _same_batch(d0, batch, loose: bool) -> bool:
    """Dim 0 is the image batch: the same number or symbol (``loose``: any symbol when the batch
    is dynamic; a token count already identifies ``[N, T, C]`` tensors, not Swin's windows)."""
    if d0 == batch:
        return True
    return loose and not isinstance(d0, int) and not isinstance(batch, int)


def token_facts(model: onnx.ModelProto, override: TokenGrid | None = None) -> TokenFacts:
    """Read the token grid, token maps, attention and default layer of ``model`` (prepared by
    :func:`blackbox_cam.gradients.prepare_model`, so shapes are known).

    ``override`` (``--tokens H,W[,EXTRA]``) replaces the grid read from the graph. A model with
    no patch tokens gives an empty :class:`TokenFacts`.
    """
    graph = model.graph
    facts = graph_facts(model)
    takers, made_by = consumers(graph), producers(graph)
    found = _patch_grid(graph, facts, takers)
    if override is None and found is None:
        return TokenFacts()
    first = found[1] if found else None
    if override is not None:
        grid, source = override, "--tokens"
    else:
        grid, source = found[0], "graph"
        if grid.layout == "NTC":
            grid = TokenGrid(grid.h, grid.w, _extra_tokens(graph, facts, takers, first, grid.h * grid.w))
    image = image_inputs(graph)
    # the batch dim: the first token tensor's (dynamic exports give it a new symbol), else the input's
    batch = (facts.dims.get(first) or facts.dims.get(image[0] if image else "", None) or (None,))[0]
    if grid.layout == "NHWC" and image:
        batch = _observe_shapes(model, facts, image[0], batch)

    # token maps: every float tensor of the grid's shape (NHWC: the grid or a merged, halved grid)
    maps: dict[str, TokenGrid] = {}
    internals: set[str] = set()
    attention: list[str] = []
    after = False  # tensors made after the first token tensor
    for node in graph.node:
        for out in node.output:
            if facts.dtypes.get(out) not in FLOAT_TYPES:
                continue
            after = after or out == first or (first is None and node.op_type in ("MatMul", "Gemm"))
            shape, sym = facts.shapes.get(out), facts.dims.get(out)
            if shape is None or not after:
                continue
            batchy = _same_batch(sym[0] if sym else None, batch, loose=grid.layout == "NTC")
            if grid.layout == "NTC" and len(shape) == 3 and shape[1] == grid.tokens and batchy and shape[2] != 1:
                maps[out] = grid
            elif (grid.layout == "NHWC" and len(shape) == 4 and batchy and None not in shape[1:3]
                  and _merged(grid, shape[1], shape[2])):
                maps[out] = TokenGrid(shape[1], shape[2], 0, "NHWC")
            elif len(shape) >= 4 or (len(shape) == 3 and not batchy):
                internals.add(out)
                if (node.op_type == "Softmax" and len(shape) == 4 and shape[2] == shape[3] == grid.tokens
                        and _attr(node, "axis", -1) in (-1, 3)):
                    attention.append(out)
    if grid.layout == "NHWC" and override is None and not any(
            n.op_type == "Softmax" and n.output[0] in internals for n in graph.node):
        # channels-last without attention is a CNN (ConvNeXt: patchify stem, channels-last
        # LayerNorm); its NHWC maps are ordinary feature maps
        return TokenFacts()
    default, why, reads = _default(graph, facts, takers, made_by, maps, attention)
    return TokenFacts(grid, source, maps, tuple(attention), frozenset(internals), default, why, reads)


def _observe_shapes(model, facts, image: str, batch):
    """Swin-style graphs: ONNX shape inference loses the shapes after the window reshapes (they
    are computed), so run the model once on zeros and read every float tensor's shape (batch 2
    when the batch is dynamic, read back as a symbol). Updates ``facts`` in place; returns the
    batch dim to compare with."""
    import numpy as np
    import onnxruntime as ort
    from onnx import helper

    unknown = [n for n, s in facts.shapes.items()
               if s is not None and None in s and facts.dtypes.get(n) in FLOAT_TYPES]
    if not unknown:
        return batch
    dims = facts.dims.get(image)
    if dims is None or any(not isinstance(d, int) for d in dims[1:]):
        return batch
    n = dims[0] if isinstance(dims[0], int) else 2
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_tensor_value_info(t, facts.dtypes[t], None) for t in unknown if t not in have)
    elem = helper.tensor_dtype_to_np_dtype(facts.dtypes.get(image, onnx.TensorProto.FLOAT))
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        values = sess.run(unknown, {image: np.zeros((n,) + tuple(dims[1:]), elem)})
    except Exception:  # noqa: BLE001 - the static shapes are all we have then
        return batch
    sym = "batch" if not isinstance(dims[0], int) else n
    for t, v in zip(unknown, values):
        shape = tuple(v.shape)
        facts.shapes[t] = shape
        facts.dims[t] = ((sym,) + shape[1:]) if shape and shape[0] == n else shape
    return sym


def _merged(grid: TokenGrid, h: int, w: int) -> bool:
    """``(h, w)`` is the grid or the grid halved k times (Swin's patch merging)."""
    gh, gw = grid.h, grid.w
    while gh >= 1 and gw >= 1:
        if (h, w) == (gh, gw):
            return True
        gh, gw = gh // 2, gw // 2
    return False


def _const_input(graph, facts, name: str) -> bool:
    return name in facts.constants or any(i.name == name for i in graph.initializer)


def _default(graph, facts, takers, made_by, maps, attention) -> tuple[str | None, str, str]:
    """The default token layer and why: see the module docstring."""
    read, how = None, ""
    for node in graph.node:  # the last node that takes tokens away: Gather/Slice on the token
        t = node.input[0] if node.input else None  # axis (extra tokens) or a mean over them
        if t not in maps:
            continue
        g = maps[t]
        if node.op_type == "Gather" and _attr(node, "axis", 0) in (1, -2) and g.layout == "NTC":
            read, how = t, "extra tokens"
        elif node.op_type == "Slice" and g.layout == "NTC" and _slice_axes(node, facts) == [1]:
            read, how = t, "extra tokens"
        elif node.op_type in ("ReduceMean", "GlobalAveragePool"):
            read, how = t, "all tokens"
    if read is None:
        return None, "", ""
    if how == "all tokens":
        return read, f"the head averages all tokens, so the default is the tensor it pools ({maps[read].label()})", how
    if not attention:
        return read, "the head reads the extra tokens; no attention found, so the default is the tensor it reads", how
    # the input of the last attention: the token map a Linear (MatMul/Gemm with a constant weight)
    # takes on the way up from its Softmax
    frontier, seen, norm1 = [attention[-1]], set(), None
    while frontier and norm1 is None:
        nxt = []
        for t in frontier:
            n = made_by.get(t)
            if n is None:
                continue
            for i in n.input:
                if not i or i in seen:
                    continue
                seen.add(i)
                if i in maps and any(c.op_type in ("MatMul", "Gemm") and c.input[0] == i
                                     and _const_input(graph, facts, c.input[1]) for c in takers.get(i, [])):
                    norm1 = i
                    break
                nxt.append(i)
            if norm1:
                break
        frontier = nxt
    if norm1 is None:
        return read, "the head reads the extra tokens; the default is the tensor it reads", how
    return norm1, ("the head reads only the extra tokens, so after the last attention the patch tokens get "
                   "zero gradient; the default is the last attention's input (its block's norm1, as "
                   "pytorch-grad-cam's ViT guide recommends)"), how


def _slice_axes(node, facts) -> list[int] | None:
    """A Slice's constant ``axes`` input (None when absent or computed)."""
    if len(node.input) > 3 and node.input[3] in facts.constants:
        return [int(a) for a in facts.constants[node.input[3]].reshape(-1)]
    return None


# --------------------------------------------------------------------------- the reshape


def add_token_reshape(model: onnx.ModelProto, pairs: dict[str, tuple[str, str]],
                      grids: dict[str, TokenGrid]) -> tuple[onnx.ModelProto, dict[str, tuple[str, str]]]:
    """Append, for every token layer in ``grids``, nodes that turn its activation and gradient
    ``[N, extra + h*w, C]`` into ``[N, h, w, C]`` (pytorch-grad-cam's ``reshape_transform``:
    ``t[:, extra:, :].reshape(N, h, w, C)``, read as channels last). ``NHWC`` token maps need no
    change. Changes ``model`` in place (the new tensors are graph outputs too); returns it and the
    new ``layer -> (A, G)`` names, to be read with the NHWC layout."""
    import numpy as np
    from onnx import helper, numpy_helper

    out = dict(pairs)
    for k, (layer, (a, g)) in enumerate(pairs.items()):
        grid = grids.get(layer)
        if grid is None or grid.layout != "NTC":
            continue
        names = []
        for j, t in enumerate((a, g)):
            p = f"tokens{k}_{j}"
            consts = {f"{p}/starts": [grid.extra], f"{p}/ends": [grid.tokens], f"{p}/axes": [1],
                      f"{p}/shape": [0, grid.h, grid.w, -1]}
            model.graph.initializer.extend(numpy_helper.from_array(np.asarray(v, np.int64), n)
                                           for n, v in consts.items())
            model.graph.node.append(helper.make_node("Slice", [t, f"{p}/starts", f"{p}/ends", f"{p}/axes"],
                                                     [f"{p}/patches"], name=f"{p}/Slice"))
            model.graph.node.append(helper.make_node("Reshape", [f"{p}/patches", f"{p}/shape"], [f"{p}/grid"],
                                                     name=f"{p}/Reshape"))
            names.append(f"{p}/grid")
            model.graph.output.append(helper.make_tensor_value_info(f"{p}/grid", onnx.TensorProto.FLOAT, None))
        out[layer] = (names[0], names[1])
    return model, out


def check_token_layer(facts: TokenFacts, name: str, shape: Sequence | None) -> None:
    """Refuse a tensor Grad-CAM cannot read as a map: an attention matrix or internal, or a
    3-D tensor that is not a token map (one line, with what would be valid)."""
    default = f" (e.g. the default {facts.default!r})" if facts.default else ""
    if name in facts.attention:
        raise BlackboxCamError(f"--layer {name!r} is an attention matrix {list(shape or [])}, not a feature map; "
                               f"Grad-CAM needs a token map{default}; for attention use -m rollout or "
                               "-m attention-grad")
    if name in facts.internals:
        raise BlackboxCamError(f"--layer {name!r} {list(shape or [])} is inside an attention (queries, keys, "
                               f"values or scores), not a feature map; pick a token map{default} "
                               "(see `blackbox-cam layers MODEL`)")
    if shape is not None and len(shape) == 3 and name not in facts.maps:
        grid = (f"the model's token maps are {facts.grid.label()}" if facts.grid else
                "the graph shows no patch grid; give one with --tokens H,W[,EXTRA]")
        raise BlackboxCamError(f"--layer {name!r} is a 3-D tensor {list(shape)} but not a token map ({grid}); "
                               "Grad-CAM needs [N, C, H, W] or tokens (see `blackbox-cam layers MODEL`)")


def mark_tokens(layers: list, facts: TokenFacts) -> list:
    """``layers`` (``LayerInfo``) with a transformer's roles: ``tokens`` for token maps (the
    layout ``NHWC`` for Swin's, none for ``[N, T, C]``), ``attention`` for the attention
    probabilities and ``attention-internal`` for queries, keys, values and scores (never maps);
    the default moved to the token default when there is one."""
    from dataclasses import replace

    if facts.grid is None:
        return layers
    out = []
    for l in layers:
        role, layout = l.role, l.layout
        if l.name in facts.maps:
            role, layout = "tokens", ("NHWC" if facts.maps[l.name].layout == "NHWC" else None)
        elif l.name in facts.attention:
            role, layout = "attention", None
        elif l.name in facts.internals and l.role != "map":  # a map the axis reader placed stays one
            role, layout = "attention-internal", None
        default = l.name == facts.default if facts.default is not None else l.is_default
        out.append(replace(l, role=role, layout=layout, is_default=default))
    return out
