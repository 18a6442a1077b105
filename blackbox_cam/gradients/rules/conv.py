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
    wshape = g.shape(w)
    wconst = g.constant(w)
    if wconst is not None:
        wshape = wconst.shape
    if wshape is None or None in wshape:
        raise BlackboxCamError(f"Conv node '{g.node.name}': kernel shape of '{w}' is unknown")
    kernel = list(wshape[2:])
    n = len(kernel)
    strides = list(g.attr("strides") or [1] * n)
    dilations = list(g.attr("dilations") or [1] * n)
    group = int(g.attr("group"))
    xs, ys = spatial(g, x), spatial(g, g.O(0))
    pads = window_pads(g, xs, kernel, strides, dilations)
    pads, out_pad = transposed_window(xs, ys, kernel, strides, dilations, pads)
    k_eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    flipped_pads = [k_eff[i % n] - 1 - p for i, p in enumerate(pads)]
    if (wconst is not None and all(s == 1 for s in strides) and not any(out_pad)
            and min(flipped_pads) >= 0):
        wt = g.const(_flipped_kernel(wconst, group))
        g.op("Conv", g.GO(0), wt, kernel_shape=kernel, pads=flipped_pads, dilations=dilations,
             group=group, out=g.GI(0))
        return
    g.op("ConvTranspose", g.GO(0), w, kernel_shape=kernel, strides=strides, dilations=dilations,
         group=group, pads=pads, output_padding=out_pad if any(out_pad) else None, out=g.GI(0))
