"""Normalisation: BatchNormalization (inference), LayerNormalization, LRN."""
from __future__ import annotations

import numpy as np

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients.rules._context import Grad
from blackbox_cam.gradients.rules._helpers import broadcast_channel, normalize_axis, reduce
from blackbox_cam.gradients.rules._registry import vjp


@vjp("BatchNormalization")
def batch_norm(g: Grad) -> None:
    """Inference mode: dX = dY * scale / sqrt(var + eps), per channel."""
    if g.attr("training_mode"):
        raise BlackboxCamError(
            f"BatchNormalization node '{g.node.name}' is in training mode; export in eval mode")
    x, scale, var = g.I(0), g.I(1), g.I(4)
    eps = float(g.attr("epsilon"))
    cs, cv = g.constant(scale), g.constant(var)
    if cs is not None and cv is not None:
        k = g.const((cs / np.sqrt(cv + eps)).astype(cs.dtype))
    else:
        k = g.op("Div", scale, g.op("Sqrt", g.op("Add", var, g.scalar(eps, var))))
    g.op("Mul", g.GO(0), broadcast_channel(g, k, g.rank(x)), out=g.GI(0))


@vjp("LayerNormalization")
def layer_norm(g: Grad) -> None:
    """dX = inv * (gh - mean(gh) - xhat * mean(gh * xhat)), gh = dY * scale."""
    x, scale = g.I(0), g.I(1)
    rank = g.rank(x)
    axes = list(range(normalize_axis(g.attr("axis"), rank), rank))
    eps = float(g.attr("epsilon"))
    xc = g.op("Sub", x, reduce(g, "ReduceMean", x, axes))
    var = reduce(g, "ReduceMean", g.op("Mul", xc, xc), axes)
    inv = g.op("Reciprocal", g.op("Sqrt", g.op("Add", var, g.scalar(eps, x))))
    xhat = g.op("Mul", xc, inv)
    gh = g.op("Mul", g.GO(0), scale)
    t = g.op("Sub", gh, reduce(g, "ReduceMean", gh, axes))
    t = g.op("Sub", t, g.op("Mul", xhat, reduce(g, "ReduceMean", g.op("Mul", gh, xhat), axes)))
    g.op("Mul", inv, t, out=g.GI(0))


@vjp("LRN")
def lrn(g: Grad) -> None:
    """y_c = x_c * d_c^-beta, d_c = bias + alpha/size * sum_{j in W(c)} x_j^2 with
    W(c) = [c - floor((size-1)/2), c + ceil((size-1)/2)].
    dx_i = dy_i d_i^-beta - 2 alpha beta / size * x_i * sum_{c: i in W(c)} dy_c x_c d_c^(-beta-1).
    Channel-window sums are a Conv over the channel axis of an [N, 1, C, H*W] view."""
    x = g.I(0)
    size = int(g.attr("size"))
    alpha, beta, bias = float(g.attr("alpha")), float(g.attr("beta")), float(g.attr("bias"))
    lo, hi = (size - 1) // 2, (size - 1) - (size - 1) // 2
    np_dtype = np.float64 if g.dtype(x) == 11 else np.float32
    ones = g.const(np.ones((1, 1, size, 1), dtype=np_dtype))
    view = g.op("Concat", g.ints([0, 1]), g.op("Slice", g.op("Shape", x), g.ints([1]),
                                                g.ints([2])), g.ints([-1]), axis=0)

    def window_sum(t: str, pb: int, pe: int) -> str:
        r = g.op("Reshape", t, view)
        return g.op("Reshape", g.op("Conv", r, ones, kernel_shape=[size, 1], pads=[pb, 0, pe, 0]),
                    g.op("Shape", x))

    d = g.op("Add", g.op("Mul", window_sum(g.op("Mul", x, x), lo, hi),
                         g.scalar(alpha / size, x)), g.scalar(bias, x))
    d_mb = g.op("Pow", d, g.scalar(-beta, x))
    first = g.op("Mul", g.GO(0), d_mb)
    inner = g.op("Div", g.op("Mul", g.op("Mul", g.GO(0), x), d_mb), d)
    second = g.op("Mul", g.op("Mul", x, window_sum(inner, hi, lo)),
                  g.scalar(2 * alpha * beta / size, x))
    g.op("Sub", first, second, out=g.GI(0))
