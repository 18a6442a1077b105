"""EigenCAM (Muhammad & Yeasin 2020): the first principal component of a layer's activations.

[1] sec. III: the activations ``O`` of a layer, one row per position (``h*w x C``), are
factored ``O = U S V^T``; the map is the projection on the first right singular vector,
``O v_1``, reshaped to ``h x w``. As pytorch-grad-cam's ``get_2d_projection`` [3] does, ``O`` is
centred per channel first; the map then goes through the Grad-CAM pipeline (ReLU, per-image
min-max, OpenCV-style bilinear resize, min-max again: :func:`blackbox_cam.methods.cams.upsample_cams`).

Gradient-free and class-blind: every target of an image gets the same map at the same layer.
For a detection the layer is the neck map of its candidate's level (``--layer auto``), which is
what pytorch-grad-cam's YOLO tutorial hooks, and ``--in-box`` renormalises the map inside the
detection's box, zero outside (the tutorial's ``renormalize_cam_in_bounding_boxes`` for one box:
min-max inside the box, then over the image).

**The sign.** ``v_1`` and ``-v_1`` are equally principal; LAPACK returns either, and the ReLU
then keeps one half of the map or the other. ``--eigen-sign peak`` (default) fixes it by Seg-Eigen-CAM's
rule [2] (eq. 13): the projection is flipped when ``|min| > |max|``, so the strongest response
is positive; this is pytorch-grad-cam's ``get_2d_projection_with_sign_correction``. ``--eigen-sign svd``
keeps LAPACK's sign through the same ``numpy.linalg.svd(full_matrices=True)`` call as
pytorch-grad-cam's ``EigenCAM``, for a number-for-number comparison with it (the sign is then
whatever LAPACK returns: on the reference YOLOv8 it disagreed with the peak rule on 4 of 9 maps).

References
----------
.. [1] M. B. Muhammad, M. Yeasin, "Eigen-CAM: Class Activation Map using Principal Components",
   IJCNN 2020 (arXiv:2008.00299).
.. [2] C.-T. Chung, J. J.-C. Ying, "Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for
   Semantic Segmentation Models", Applied Sciences 15(13), 7562, 2025.
.. [3] J. Gildenblat and contributors, pytorch-grad-cam (``utils/svd_on_activations.py``,
   ``eigen_cam.py``; the tutorial "EigenCAM for YOLO5").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import BlackboxCamError
from . import _detgrad, cams
from .base import MethodOutput, register
from .gradcam import (LAYER_OPTION, TOKENS_OPTION, _compile_gradient_graph, _gradients, _state,
                      detection_layer, detector_levels, layer_info, resolve_layer, token_facts)
from .options import Option

SIGNS = ("peak", "svd")


def eigen_projection(activations: np.ndarray, *, layout: str = "NCHW", sign: str = "peak") -> np.ndarray:
    """``[B, h, w]`` float32: each image's centred activations projected on their first principal
    direction, before the ReLU (see the module docstring for ``sign``)."""
    if sign not in SIGNS:
        raise BlackboxCamError(f"--eigen-sign {sign!r}: choose one of {', '.join(SIGNS)}")
    lay = cams.get_layout(layout)
    A = np.asarray(activations, np.float32)
    if A.ndim != 4:
        raise BlackboxCamError(f"EigenCAM needs 4-D activations ({lay.name}), got {A.shape}")
    A = np.moveaxis(A, lay.channel, 1)  # NCHW
    A = np.where(np.isnan(A), np.float32(0), A)
    out = []
    for a in A:
        X = a.reshape(a.shape[0], -1).T
        X = X - X.mean(axis=0)
        if sign == "svd":  # pytorch-grad-cam's own call, for its sign (U is h*w x h*w: slow on big maps)
            v = np.linalg.svd(X, full_matrices=True)[2][0, :]
        else:  # the sign is fixed below, so the top eigenvector of the C x C scatter matrix will do
            X64 = X.astype(np.float64)
            v = np.linalg.eigh(X64.T @ X64)[1][:, -1].astype(np.float32)
        p = (X @ v).reshape(a.shape[1:])
        if sign == "peak" and abs(p.min()) > abs(p.max()):
            p = -p
        out.append(p)
    return np.asarray(out, np.float32)


def renormalise_in_box(saliency: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """``saliency`` ``[H, W]`` min-max normalised inside ``box`` (x0, y0, x1, y1 integer pixels,
    end exclusive), zero outside, then min-max over the image (pytorch-grad-cam's
    ``scale_cam_image`` on the box as one image, then on the whole)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    out = np.zeros(saliency.shape, np.float32)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = cams.scale_cam(saliency[None, y0:y1, x0:x1])[0]
    return cams.scale_cam(out[None])[0]


def _activations(model, name: str, x: np.ndarray, tokens: str | None) -> tuple[np.ndarray, str]:
    """The activations of layer ``name`` for a model-space batch, as ``[N, C, h, w]`` or
    ``[N, h, w, C]``, and that layout (a transformer's token map is cut to its patch grid)."""
    from ..model.backends import run_batched

    st = _state(model, tokens)
    key = ("activations", name)
    run = st["runs"].get(key)
    if run is None:
        session = _compile_gradient_graph(model, _gradients().activation_model(st["model"], [name]))
        run = st["runs"][key] = {"session": session}
    fixed = run["session"].input(model.input_name).fixed_batch
    step = fixed or int(getattr(model, "batch_size", None) or len(x))
    A = run_batched(run["session"], {model.input_name: model.to_feed(x)}, [name], step, fixed=fixed is not None)[0]
    grid = st["facts"].maps.get(name)
    if grid is not None and grid.layout == "NTC":
        return A[:, grid.extra:grid.tokens, :].reshape(len(A), grid.h, grid.w, -1), "NHWC"
    info = resolve_layer(st["layers"], name, st["model"], st["facts"])
    return A, ("NHWC" if grid is not None else info.layout)


def check_eigencam(model, options) -> None:
    """``--layer`` against the model, once (a detector's ``auto``: the levels of its head)."""
    if _detgrad.layout_of(model) is not None:
        layer = options["layer"]
        if layer is None or str(layer).lower() == "auto":
            levels = detector_levels(model)
            if not levels or any(l.neck is None for l in levels):
                raise BlackboxCamError("--layer auto: the levels of this detector's head are not plain in the graph; "
                                       "pick a feature map with --layer (`blackbox-cam layers MODEL` lists them)")
        else:
            st = _state(model)
            resolve_layer(st["layers"], layer, st["model"], st["facts"])
        return
    if options.get("in_box"):
        raise BlackboxCamError("--in-box renormalises inside a detection's box: it needs a detector")
    layer_info(model, options["layer"], options.get("tokens", "auto"))


@register("eigencam", whitebox=True, check=check_eigencam, kinds=("class", "detection"),
          summary="EigenCAM (Muhammad & Yeasin 2020): first principal component of the layer's activations, "
                  "class-blind, gradient-free",
          options=(LAYER_OPTION, TOKENS_OPTION,
                   Option("sign", str, "peak", "How the principal component's sign is fixed: peak (Seg-Eigen-CAM: "
                          "flipped when |min| > |max|, so the strongest response is positive) or svd (as LAPACK "
                          "returns it, like pytorch-grad-cam's EigenCAM; its full SVD is slow on large maps).", choices=SIGNS,
                          flag="--eigen-sign"),
                   Option("in_box", bool, False, "For a detection: renormalise the map inside its box and set it "
                          "to zero outside (pytorch-grad-cam's YOLO tutorial).")))
def eigencam(model, x: np.ndarray, target, *, budget: None, seed: int, score: float, layer: str,
             tokens: str = "auto", sign: str = "peak", in_box: bool = False) -> MethodOutput:
    """EigenCAM at ``layer`` (a detection: the neck map of its candidate's level)."""
    params: dict = {}
    box = None
    if _detgrad.is_detection(target):
        t = _detgrad.candidate_target(model, x, target)
        info, level = detection_layer(model, t.candidate, layer)
        params.update(candidate=t.candidate, **({"level": level.name} if level is not None else {}))
        if in_box:
            if t.box is None:
                raise BlackboxCamError("--in-box: the detection has no box")
            box = _detgrad.box_pixels(t.box, model.input_size)
            params["box_pixels"] = list(box)
    else:
        if in_box:
            raise BlackboxCamError("--in-box renormalises inside a detection's box: it needs a detection target")
        info = layer_info(model, layer, tokens)
    A, lay = _activations(model, info.name, np.asarray(x, np.float32)[None], tokens)
    raw = np.maximum(eigen_projection(A, layout=lay, sign=sign), 0)
    saliency = cams.upsample_cams(raw, tuple(model.input_size))[0]
    if box is not None:
        saliency = renormalise_in_box(saliency, box)
    grid = token_facts(model, tokens).maps.get(info.name)
    params.update(layer=info.name, layer_shape=list(info.shape or []), **({"token_grid": grid.label()} if grid else {}))
    return MethodOutput(saliency, params, {"cam": raw[0]})


def eigen_cams(model, x: np.ndarray, *, layer: str, sign: str = "peak", tokens: str | None = None) -> np.ndarray:
    """EigenCAM maps ``[N, H, W]`` for a model-space batch at one ``layer`` (a tensor name)."""
    A, lay = _activations(model, layer, np.asarray(x, np.float32), tokens)
    return cams.upsample_cams(np.maximum(eigen_projection(A, layout=lay, sign=sign), 0), tuple(model.input_size))
