"""Helpers shared by the rules: un-broadcasting, reductions, flat-index scatter, pads.

Everything that depends on a tensor's runtime shape uses Shape/Size ops, so a dynamic batch
dimension keeps working.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients.rules._context import Grad


def unbroadcast(g: Grad, grad: str, like: str, out: str | None = None,
                grad_dims: tuple | None | str = "O0") -> str:
    """Sum ``grad`` (shaped like the broadcast result) back to the shape of tensor ``like``.

    Reduces over the leading axes ``like`` lacks and over axes where ``like`` has size 1, then
    reshapes to ``Shape(like)``. ``grad_dims`` are the static dims of ``grad`` (ints, symbols or
    None; default: those of forward output 0). When the static dims do not settle which axes
    are broadcast (say an unnamed dynamic dim), the axes are computed at run time.
    """
    gdims = g.dims(g.O(0)) if grad_dims == "O0" else grad_dims
    ldims = g.dims(like)
    if gdims is not None and ldims is not None and len(gdims) >= len(ldims):
        extra = len(gdims) - len(ldims)
        axes = list(range(extra))
        decided = True
        for j, d in enumerate(ldims):
            gd = gdims[extra + j]
            if d == 1:
                if gd != 1:
                    axes.append(extra + j)
            elif isinstance(d, int):
                continue  # a static size other than 1 is never broadcast
            elif not (isinstance(d, str) and d == gd):
                decided = False  # unknown: 1 or not, ask at run time
        if decided:
            if not axes:
                return g.op("Identity", grad, out=out)
            red = g.op("ReduceSum", grad, g.ints(axes), keepdims=1)
            return g.op("Reshape", red, g.op("Shape", like), out=out)
    # run time: axes where the (left-padded) shape of `like` differs from the gradient's shape
    gs = g.op("Shape", grad)
    ls = g.op("Shape", like)
    pad_n = g.op("Sub", g.op("Size", gs), g.op("Size", ls))
    ones = g.op("Expand", g.ints([1]), g.op("Reshape", pad_n, g.ints([1])))
    padded = g.op("Concat", ones, ls, axis=0)
    differ = g.op("Not", g.op("Equal", padded, gs))
    axes = g.op("Reshape", g.op("NonZero", differ), g.ints([-1]))
    red = g.op("ReduceSum", grad, axes, keepdims=1, noop_with_empty_axes=1)
    return g.op("Reshape", red, ls, out=out)


def reduce(g: Grad, op_type: str, x: str, axes: Sequence[int], keepdims: int = 1,
           out: str | None = None) -> str:
    """Emit ReduceSum/ReduceMean over ``axes`` in the form the model's opset wants."""
    if op_type == "ReduceSum" or g.opset >= 18:
        return g.op(op_type, x, g.ints(axes), keepdims=keepdims, out=out)
    return g.op(op_type, x, axes=list(axes), keepdims=keepdims, out=out)


def flat_index_like(g: Grad, x: str) -> str:
    """int64 tensor shaped like ``x`` holding each element's flat (row-major) index."""
    n = g.op("Size", x)
    rng = g.op("Range", g.const(0, np.int64), n, g.const(1, np.int64))
    return g.op("Reshape", rng, g.op("Shape", x))


def scatter_add_flat(g: Grad, grad: str, flat_index: str, like: str, out: str | None = None,
                     extra_slot: bool = False) -> str:
    """Zeros shaped like ``like`` plus ``grad`` added at the flat positions ``flat_index``.

    With ``extra_slot`` the index may equal ``Size(like)``: those contributions are dropped.
    """
    flat_idx = g.op("Reshape", flat_index, g.ints([-1]))
    flat_grad = g.op("Reshape", grad, g.ints([-1]))
    n = g.op("Reshape", g.op("Size", like), g.ints([1]))
    if extra_slot:
        n = g.op("Add", n, g.ints([1]))
    dtype = g.dtype(like)
    if dtype in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16):
        # ONNX Runtime's CPU ScatterElements has no add reduction in half precision (a float16
        # export's MaxPool): accumulate in float32, then cast back
        zeros = g.op("Cast", g.op("ConstantOfShape", n), to=onnx.TensorProto.FLOAT)
        flat_grad = g.op("Cast", flat_grad, to=onnx.TensorProto.FLOAT)
        summed = g.op("Cast", g.op("ScatterElements", zeros, flat_idx, flat_grad, axis=0, reduction="add"),
                      to=dtype)
    else:
        zeros = g.op("Mul", g.op("Cast", g.op("ConstantOfShape", n), to=dtype), g.scalar(0.0, like))
        summed = g.op("ScatterElements", zeros, flat_idx, flat_grad, axis=0, reduction="add")
    if extra_slot:
        summed = g.op("Slice", summed, g.ints([0]), g.op("Sub", n, g.ints([1])), g.ints([0]))
    return g.op("Reshape", summed, g.op("Shape", like), out=out)


def window_pads(g: Grad, x_spatial: Sequence[int | None], kernel: Sequence[int],
                strides: Sequence[int], dilations: Sequence[int]) -> list[int]:
    """Explicit pads [b1.., e1..] of a Conv/Pool node, resolving auto_pad."""
    n = len(kernel)
    auto_pad = g.attr("auto_pad")
    if auto_pad in ("NOTSET", ""):
        pads = g.attr("pads")
        return list(pads) if pads else [0] * (2 * n)
    if auto_pad == "VALID":
        return [0] * (2 * n)
    if None in x_spatial:
        raise BlackboxCamError(
            f"{g.node.op_type} node '{g.node.name}' uses auto_pad={auto_pad} with dynamic "
            "spatial dims; gradients need static spatial dims")
    begin, end = [], []
    for xs, k, s, d in zip(x_spatial, kernel, strides, dilations):
        out = -(-xs // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - xs)
        small, big = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else big)
        end.append(big if auto_pad == "SAME_UPPER" else small)
    return begin + end


def transposed_window(x_spatial: Sequence[int], y_spatial: Sequence[int], kernel: Sequence[int],
                      strides: Sequence[int], dilations: Sequence[int], pads: Sequence[int]
                      ) -> tuple[list[int], list[int]]:
    """Pads and output_padding making ConvTranspose(dY) come back exactly to X's size.

    ConvTranspose gives ``s*(y-1) + op + k_eff - pb - pe``; rows of X no window reached
    become output_padding, windows reaching past X (ceil_mode) are cropped by extra end pads.
    """
    n = len(kernel)
    pads = list(pads)
    out_pad = []
    for i, (xs, ys, k, s, d) in enumerate(zip(x_spatial, y_spatial, kernel, strides, dilations)):
        base = s * (ys - 1) + (k - 1) * d + 1 - pads[i] - pads[n + i]
        if base <= xs:
            out_pad.append(xs - base)
        else:
            pads[n + i] += base - xs
            out_pad.append(0)
    return pads, out_pad


def spatial(g: Grad, name: str) -> list[int]:
    """Static spatial dims of an N,C,... tensor; a clear error if they are dynamic."""
    shape = g.shape(name)
    if shape is None or None in shape[2:]:
        raise BlackboxCamError(
            f"{g.node.op_type} node '{g.node.name}': the spatial dims of '{name}' are not static "
            f"({shape}); gradients of windowed ops need them: export with a fixed image size")
    return list(shape[2:])


def broadcast_channel(g: Grad, vec: str, rank: int) -> str:
    """Reshape a [C] vector to [C, 1, ..., 1] so it broadcasts over an N,C,... tensor."""
    return g.op("Reshape", vec, g.ints([-1] + [1] * (rank - 2)))


def normalize_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis
