"""Pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool."""
from __future__ import annotations

import numpy as np
from onnx import helper

from blackbox_cam.gradients.rules._context import Grad
from blackbox_cam.gradients.rules._helpers import (
    scatter_add_flat, spatial, transposed_window, window_pads)
from blackbox_cam.gradients.rules._registry import vjp


def _window(g: Grad):
    kernel = list(g.attr("kernel_shape"))
    n = len(kernel)
    strides = list(g.attr("strides") or [1] * n)
    dilations = list(g.attr("dilations") or [1] * n)
    return kernel, strides, dilations


@vjp("MaxPool")
def max_pool(g: Grad) -> None:
    """Rerun the pool with its Indices output, scatter-add dY there (windows may overlap)."""
    attrs = g.attrs()
    _, idx = g.op("MaxPool", g.I(0), n_out=2, **attrs)
    scatter_add_flat(g, g.GO(0), idx, g.I(0), out=g.GI(0))


def _counts_1d(xs: int, ys: int, k: int, s: int, d: int, pb: int, pe: int,
               include_pad: bool) -> np.ndarray:
    lo, hi = (-pb, xs + pe) if include_pad else (0, xs)
    pos = np.arange(ys)[:, None] * s - pb + np.arange(k)[None, :] * d
    return ((pos >= lo) & (pos < hi)).sum(axis=1)


@vjp("AveragePool")
def average_pool(g: Grad) -> None:
    """dX = ConvTranspose(dY / count, ones) per channel, counts fixed at build time."""
    x = g.I(0)
    kernel, strides, dilations = _window(g)
    n = len(kernel)
    xs, ys = spatial(g, x), spatial(g, g.O(0))
    pads = window_pads(g, xs, kernel, strides, dilations)
    include = bool(g.attr("count_include_pad"))
    counts = np.ones((), dtype=np.float64)
    for i in range(n):
        c = _counts_1d(xs[i], ys[i], kernel[i], strides[i], dilations[i], pads[i], pads[n + i],
                       include)
        counts = np.multiply.outer(counts, c)
    np_dtype = helper.tensor_dtype_to_np_dtype(g.dtype(x))
    inv = g.const((1.0 / np.maximum(counts, 1)).astype(np_dtype))
    t_pads, out_pad = transposed_window(xs, ys, kernel, strides, dilations, pads)
    dy = g.op("Mul", g.op("Reshape", g.GO(0), g.ints([-1, 1] + ys)), inv)
    ones = g.const(np.ones([1, 1] + kernel, dtype=np_dtype))
    dx = g.op("ConvTranspose", dy, ones, kernel_shape=kernel, strides=strides,
              dilations=dilations, pads=t_pads, output_padding=out_pad if any(out_pad) else None)
    g.op("Reshape", dx, g.op("Shape", x), out=g.GI(0))


def mean_count(g: Grad, x: str, y: str) -> str:
    """Number of elements averaged into each output element, as a float scalar (run time)."""
    n = g.op("Div", g.op("Size", x), g.op("Size", y))
    return g.op("Cast", n, to=g.dtype(x))


@vjp("GlobalAveragePool")
def global_average_pool(g: Grad) -> None:
    x = g.I(0)
    spread = g.op("Expand", g.GO(0), g.op("Shape", x))
    g.op("Div", spread, mean_count(g, x, g.O(0)), out=g.GI(0))


@vjp("GlobalMaxPool")
def global_max_pool(g: Grad) -> None:
    """The gradient goes to the position(s) holding the maximum (every tie gets it)."""
    x = g.I(0)
    at_max = g.op("Equal", x, g.O(0))
    spread = g.op("Expand", g.GO(0), g.op("Shape", x))
    g.op("Where", at_max, spread, g.scalar(0.0, x), out=g.GI(0))
