"""Data movement: Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Transpose, Concat,
Split, Slice, Pad, Gather, Expand, Cast.

Slice, Gather and Pad share one exact trick: apply the forward op to a tensor of flat element
indices shaped like the input, then scatter-add the gradient to those indices.
"""
from __future__ import annotations

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients.rules._context import Grad
from blackbox_cam.gradients.rules._helpers import flat_index_like, scatter_add_flat, unbroadcast
from blackbox_cam.gradients.rules._registry import vjp


@vjp("Reshape")
@vjp("Flatten")
@vjp("Squeeze")
@vjp("Unsqueeze")
def reshape(g: Grad) -> None:
    g.op("Reshape", g.GO(0), g.op("Shape", g.I(0)), out=g.GI(0))


@vjp("Identity")
@vjp("Dropout")
def identity(g: Grad) -> None:
    """Dropout in inference mode is the identity (a training_mode input of True is rejected)."""
    if g.node.op_type == "Dropout" and g.I(2):
        mode = g.constant(g.I(2))
        if mode is None or bool(mode):
            raise BlackboxCamError(
                f"Dropout node '{g.node.name}' may run in training mode; export the model in "
                "eval mode")
    g.op("Identity", g.GO(0), out=g.GI(0))


@vjp("Transpose")
def transpose(g: Grad) -> None:
    perm = g.attr("perm")
    if perm is None:
        perm = list(reversed(range(g.rank(g.I(0)))))
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    g.op("Transpose", g.GO(0), perm=inverse, out=g.GI(0))


@vjp("Concat")
def concat(g: Grad) -> None:
    if len(g.node.input) == 1:  # a one-input Concat is the identity
        g.op("Identity", g.GO(0), out=g.GI(0))
        return
    axis = g.attr("axis")
    sizes = [g.op("Gather", g.op("Shape", g.I(i)), g.ints([axis]), axis=0)
             for i in range(len(g.node.input))]
    outs = g.op("Split", g.GO(0), g.op("Concat", *sizes, axis=0), axis=axis, n_out=len(sizes))
    for i, o in enumerate(outs):
        if g.needs(i):
            g.op("Identity", o, out=g.GI(i))


@vjp("Split")
def split(g: Grad) -> None:
    g.op("Concat", *[g.GO(i) for i in range(len(g.node.output))], axis=g.attr("axis"),
         out=g.GI(0))


@vjp("Slice")
def slice_(g: Grad) -> None:
    idx = g.op("Slice", flat_index_like(g, g.I(0)), *g.node.input[1:])
    scatter_add_flat(g, g.GO(0), idx, g.I(0), out=g.GI(0))


@vjp("Gather")
def gather(g: Grad) -> None:
    idx = g.op("Gather", flat_index_like(g, g.I(0)), g.I(1), axis=g.attr("axis"))
    scatter_add_flat(g, g.GO(0), idx, g.I(0), out=g.GI(0))


@vjp("Pad")
def pad(g: Grad) -> None:
    """Padded positions get index Size(X), a slot the scatter drops."""
    x = g.I(0)
    if len(g.node.input) < 2 or not g.I(1):
        raise BlackboxCamError(f"Pad node '{g.node.name}' has no pads input (opset < 11?)")
    rest = [g.I(1), g.op("Size", x)] + ([g.I(3)] if g.I(3) else [])
    idx = g.op("Pad", flat_index_like(g, x), *rest, mode=g.attr("mode"))
    scatter_add_flat(g, g.GO(0), idx, x, out=g.GI(0), extra_slot=True)


@vjp("Expand")
def expand(g: Grad) -> None:
    unbroadcast(g, g.GO(0), g.I(0), out=g.GI(0))


@vjp("Cast")
def cast(g: Grad) -> None:
    g.op("Cast", g.GO(0), to=g.dtype(g.I(0)), out=g.GI(0))
