"""Resize (any mode): the transposed interpolation matrices, computed once at build time.

ONNX Resize acts on each axis independently (nearest, linear, cubic, with or without
antialias), so on a rank-4 input resized over H and W, Y = A_h X A_w^T per plane and
dX = A_h^T dY A_w. The matrices are read off by running the very same Resize node (same
attributes, through onnxruntime) on identity bases, so every coordinate-transformation mode
comes out exactly as the forward op computes it.
"""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients.rules._context import Grad
from blackbox_cam.gradients.rules._registry import vjp


def _axis_matrix(g: Grad, axis: int, n_in: int, n_out: int, scale: float | None,
                 np_dtype) -> np.ndarray:
    """[n_in, n_out] matrix M with Y_axis = M^T X_axis for the forward Resize."""
    import onnxruntime as ort

    shape = [n_in, 1, 1, 1]
    shape[axis] = n_in
    basis = np.zeros(shape, dtype=np_dtype)
    idx = np.arange(n_in)
    index = [idx, 0, 0, 0]
    index[axis] = idx
    basis[tuple(index)] = 1
    attrs = g.attrs()
    inits = []
    if scale is not None:
        scales = [1.0, 1.0, 1.0, 1.0]
        scales[axis] = scale
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        inputs = ["x", "", "scales"]
    else:
        sizes = list(shape)
        sizes[axis] = n_out
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        inputs = ["x", "", "", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(np_dtype))
    graph = helper.make_graph([node], "basis", [helper.make_tensor_value_info("x", elem, shape)],
                              [helper.make_tensor_value_info("y", elem, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)],
                              ir_version=10)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": basis})[0]
    return out.reshape(n_in, n_out)


@vjp("Resize")
def resize(g: Grad) -> None:
    x, y = g.I(0), g.O(0)
    xs, ys = g.shape(x), g.shape(y)
    mode = g.node.op_type
    if xs is None or ys is None or len(xs) != 4 or None in xs[2:] or None in ys[2:]:
        raise BlackboxCamError(
            f"{mode} node '{g.node.name}': gradients need a rank-4 input with static spatial "
            f"dims (got {xs} -> {ys})")
    if any(a.name in ("axes", "keep_aspect_ratio_policy") for a in g.node.attribute):
        raise BlackboxCamError(f"{mode} node '{g.node.name}': the axes/keep_aspect_ratio_policy "
                               "attributes are not supported")
    if g.attrs().get("coordinate_transformation_mode") == "tf_crop_and_resize":
        raise BlackboxCamError(f"{mode} node '{g.node.name}': tf_crop_and_resize is not supported")
    scales = g.constant(g.I(2)) if g.I(2) else None
    if scales is not None and scales.size == 0:
        scales = None
    if scales is None and (not g.I(3) or g.constant(g.I(3)) is None):
        raise BlackboxCamError(f"{mode} node '{g.node.name}': scales/sizes must be constants")
    if scales is not None and (scales[0] != 1 or scales[1] != 1):
        raise BlackboxCamError(f"{mode} node '{g.node.name}': resizing N or C is not supported")
    np_dtype = helper.tensor_dtype_to_np_dtype(g.dtype(x))
    mats = [_axis_matrix(g, k, xs[k], ys[k], None if scales is None else float(scales[k]),
                         np_dtype) for k in (2, 3)]
    dx = g.GO(0)
    mh, mw = mats
    if not (xs[2] == ys[2] and np.array_equal(mh, np.eye(xs[2]))):
        dx = g.op("MatMul", g.const(mh), dx)  # [H, H'] @ [N, C, H', W'] -> [N, C, H, W']
    if not (xs[3] == ys[3] and np.array_equal(mw, np.eye(xs[3]))):
        dx = g.op("MatMul", dx, g.const(np.ascontiguousarray(mw.T)))  # [.., W'] @ [W', W]
    g.op("Identity", dx, out=g.GI(0))
