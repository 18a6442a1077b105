"""Convolution: dX of Conv (any group, dilation, stride, pads or auto_pad).

dX = ConvTranspose(dY, W) with the forward strides/dilations/group/pads and an output_padding
that restores X's size (``output_shape`` is never set: ORT would then ignore explicit pads,
breaking asymmetric TF-"same" pads). For stride 1 and a constant kernel, a plain Conv with the
per-group transposed, spatially flipped kernel gives the same result faster in ORT.
dW is not computed: only gradients w.r.t. activations are needed.
"""
from __future__ import annotations

import numpy as np

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients.rules._context import Grad
from blackbox_cam.gradients.rules._helpers import spatial, transposed_window, window_pads
from blackbox_cam.gradients.rules._registry import vjp


def _flipped_kernel(w: np.ndarray, group: int) -> np.ndarray:
    """[M, C/g, k...] -> [C, M/g, k...] per group, spatially flipped."""
    m, cg = w.shape[:2]
    k = w.shape[2:]
    wg = w.reshape((group, m // group, cg) + k).swapaxes(1, 2)
    wt = wg.reshape((group * cg, m // group) + k)
    return np.ascontiguousarray(wt[(slice(None), slice(None)) + (slice(None, None, -1),) * len(k)])


@vjp("Conv")
def conv(g: Grad) -> None:
    x, w = g.I(0), g.I(1)
    if g.needs(1) or g.needs(2):
        raise BlackboxCamError(
            f"Conv node '{g.node.name}': gradients w.r.t. its weights are not supported; choose "
            "activation layers")
    wconst = g.constant(w)
    wshape = wconst.shape if wconst is not None else g.shape(w)
    if wshape is None or None in wshape:
        raise BlackboxCamError(f"Conv node '{g.node.name}': kernel shape of '{w}' is unknown")
    kernel = list(wshape[2:])
    n = len(kernel)
    strides = list(g.attr("strides") or [1] * n)
    dilations = list(g.attr("dilations") or [1] * n)
    group = int(g.attr("group"))
    xshape = g.shape(x)
    xs = None if xshape is None or None in xshape[2:] else list(xshape[2:])
    if xs is None and g.attr("auto_pad") not in ("NOTSET", "VALID"):
        xs = spatial(g, x)  # SAME_* pads depend on the input size: a clear error
    pads = window_pads(g, xs or [None] * n, kernel, strides, dilations)
    k_eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    flipped_pads = [k_eff[i % n] - 1 - p for i, p in enumerate(pads)]
    if wconst is not None and all(s == 1 for s in strides) and min(flipped_pads) >= 0:
        # stride 1: dX is a plain correlation with the transposed, flipped kernel
        wt = g.const(_flipped_kernel(wconst, group))
        g.op("Conv", g.GO(0), wt, kernel_shape=kernel, pads=flipped_pads, dilations=dilations,
             group=group, out=g.GI(0))
        return
    ys = g.shape(g.O(0))
    if xs is not None and ys is not None and None not in ys[2:]:
        pads, out_pad = transposed_window(xs, list(ys[2:]), kernel, strides, dilations, pads)
        g.op("ConvTranspose", g.GO(0), w, kernel_shape=kernel, strides=strides,
             dilations=dilations, group=group, pads=pads,
             output_padding=out_pad if any(out_pad) else None, out=g.GI(0))
        return
    # dynamic spatial dims: the largest output_padding covers X; crop the end to X's size
    full = g.op("ConvTranspose", g.GO(0), w, kernel_shape=kernel, strides=strides,
                dilations=dilations, group=group, pads=pads,
                output_padding=[s - 1 for s in strides])
    end = g.op("Slice", g.op("Shape", x), g.ints([2]), g.ints([2 + n]))
    g.op("Slice", full, g.ints([0] * n), end, g.ints(list(range(2, 2 + n))), out=g.GI(0))
