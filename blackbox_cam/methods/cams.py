"""The Grad-CAM family, computed from a layer's activations and gradients.

Every method here maps activations ``A`` and gradients ``G = d(score)/dA`` (same shape,
``[B, K, h, w]`` for NCHW layers) to a class activation map ``[B, h, w]``. The pipeline
around them follows pytorch-grad-cam's ``BaseCAM`` so that maps are comparable number for
number with it:

1. ``cam = method(A, G)``                       (the one hook a method implements)
2. ``cam = max(cam, 0)``                        (ReLU)
3. per image: ``cam = (cam - min) / (max' + 1e-7)`` then bilinear resize to the image size
   with OpenCV's ``INTER_LINEAR`` convention (:func:`resize_bilinear`)
4. per image: the same min-max normalisation again (pytorch-grad-cam's multi-layer
   aggregation, a mean over layers, runs it even for a single layer).

Each method is written once against a small kernel (:class:`_NumpyKernel` or
:class:`_GraphKernel`), so the same formula runs in numpy (:func:`cam_image`) or is emitted
into an ONNX graph (:func:`add_cam_outputs`), where a single run returns ``[B, h, w]`` maps for
many layers instead of their full activations and gradients. Axes come from a
:class:`Layout` so formulas never name them.

References
----------
.. [1] R. R. Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
   Gradient-based Localization", ICCV 2017.
.. [2] A. Chattopadhyay et al., "Grad-CAM++: Improved Visual Explanations for Deep
   Convolutional Networks", WACV 2018 (arXiv:1710.11063).
.. [3] R. L. Draelos, L. Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations
   of convolutional neural networks", arXiv:2011.08891, 2020.
.. [4] R. Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of
   CNNs", BMVC 2020 (arXiv:2008.02312).
.. [5] P.-T. Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
   Localization", IEEE TIP 30, 2021.
.. [6] J. Gildenblat and contributors, pytorch-grad-cam (``base_cam.py``,
   ``utils/image.py:scale_cam_image``), https://github.com/jacobgil/pytorch-grad-cam
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BlackboxCamError

#: pytorch-grad-cam's epsilon in ``scale_cam_image``.
NORM_EPS = 1e-7


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Layout:
    """Where the channel and spatial axes of a 4-D feature map are."""

    name: str
    channel: int
    spatial: tuple[int, int]


NCHW = Layout("NCHW", 1, (2, 3))
NHWC = Layout("NHWC", 3, (1, 2))
LAYOUTS = {"NCHW": NCHW, "NHWC": NHWC}


def get_layout(layout: str | Layout) -> Layout:
    if isinstance(layout, Layout):
        return layout
    try:
        return LAYOUTS[str(layout).upper()]
    except KeyError:
        raise BlackboxCamError(f"unknown feature-map layout {layout!r}; use one of {sorted(LAYOUTS)}") from None


# --------------------------------------------------------------------------- kernels


class _NumpyKernel:
    """The reductions a CAM formula needs, on numpy arrays (float32 in, float32 out)."""

    def __init__(self, layout: Layout):
        self.layout = layout

    def spatial_mean(self, x):
        return np.mean(x, axis=self.layout.spatial, keepdims=True)

    def spatial_sum(self, x):
        return np.sum(x, axis=self.layout.spatial, keepdims=True)

    def channel_sum(self, x):
        return np.sum(x, axis=self.layout.channel)

    def relu(self, x):
        return np.maximum(x, 0)

    def where_nonzero(self, test, x):
        """``x`` where ``test != 0``, else 0."""
        return np.where(test != 0, x, 0).astype(x.dtype, copy=False)


CamFormula = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class CamMethod:
    name: str
    formula: CamFormula
    summary: str


#: name -> :class:`CamMethod`; filled by :func:`_cam_method`.
CAM_METHODS: dict[str, CamMethod] = {}


def _cam_method(name: str) -> Callable[[CamFormula], CamFormula]:
    def deco(fn: CamFormula) -> CamFormula:
        CAM_METHODS[name] = CamMethod(name, fn, (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


# --------------------------------------------------------------------------- the methods
# Each takes activations A, gradients G and a kernel k, and returns the map before ReLU.


@_cam_method("gradcam")
def gradcam(A, G, k):
    """Grad-CAM (Selvaraju et al. 2017): channels weighted by their mean gradient.

    [1] eq. 1-2: alpha_k = mean_ij dY/dA^k_ij;  cam = sum_k alpha_k A^k.
    """
    weights = k.spatial_mean(G)
    return k.channel_sum(weights * A)


@_cam_method("gradcam++")
def gradcam_plusplus(A, G, k):
    """Grad-CAM++ (Chattopadhyay et al. 2018): channels weighted by alpha-scaled positive gradients.

    [2] eq. 19 (exponential score, so higher derivatives are powers of the first):
    a^k_ij = g^2 / (2 g^2 + sum_ab A^k_ab g^3);  w_k = sum_ij a^k_ij relu(g_ij);
    cam = sum_k w_k A^k, with a = 0 where g = 0 (pytorch-grad-cam's convention).
    """
    g2 = G * G
    g3 = g2 * G
    alpha = g2 / (2 * g2 + k.spatial_sum(A) * g3 + 1e-6)
    alpha = k.where_nonzero(G, alpha)
    weights = k.spatial_sum(k.relu(G) * alpha)
    return k.channel_sum(weights * A)


@_cam_method("hirescam")
def hirescam(A, G, k):
    """HiResCAM (Draelos & Carin 2020): element-wise gradient x activation, summed over channels.

    [3] eq. 3: cam = sum_k G^k (.) A^k.
    """
    return k.channel_sum(G * A)


@_cam_method("xgradcam")
def xgradcam(A, G, k):
    """XGrad-CAM (Fu et al. 2020): channels weighted by activation-normalised gradient sums.

    [4] eq. 10: w_k = sum_ij (A^k_ij / sum_ab A^k_ab) dY/dA^k_ij;  cam = sum_k w_k A^k.
    """
    weights = k.spatial_sum(G * A / (k.spatial_sum(A) + 1e-7))
    return k.channel_sum(weights * A)


@_cam_method("layercam")
def layercam(A, G, k):
    """LayerCAM (Jiang et al. 2021): element-wise positive gradient x activation.

    [5] eq. 5-6: cam = sum_k relu(G^k) (.) A^k.
    """
    return k.channel_sum(k.relu(G) * A)


def check_method(name: str) -> CamMethod:
    try:
        return CAM_METHODS[name]
    except KeyError:
        raise BlackboxCamError(f"unknown CAM method {name!r}; use one of {sorted(CAM_METHODS)}") from None


# --------------------------------------------------------------------------- numpy pipeline


def cam_image(method: str, activations: np.ndarray, gradients: np.ndarray, *,
              layout: str | Layout = NCHW) -> np.ndarray:
    """``method``'s map before upsampling: ``relu(method(A, G))``, float32 ``[B, h, w]``."""
    spec = check_method(method)
    lay = get_layout(layout)
    A = np.asarray(activations, dtype=np.float32)
    G = np.asarray(gradients, dtype=np.float32)
    if A.shape != G.shape or A.ndim != 4:
        raise BlackboxCamError(
            f"activations {A.shape} and gradients {G.shape} must be equal 4-D shapes ({lay.name})")
    return np.maximum(spec.formula(A, G, _NumpyKernel(lay)), 0).astype(np.float32, copy=False)


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of OpenCV's INTER_LINEAR along one axis.

    OpenCV maps output pixel ``d`` to ``s = (d + 0.5) * n_in / n_out - 0.5`` (half-pixel
    centres), computed in double and rounded to float; ``s < 0`` and ``s >= n_in - 1``
    are clamped to the edge pixel with weight 0 (``resize.cpp``, ``resizeGeneric_``).
    """
    scale = 1.0 / (float(n_out) / float(n_in))
    s = ((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(s).astype(np.int64)
    frac = (s - i0.astype(np.float32)).astype(np.float32)
    low = i0 < 0
    i0[low], frac[low] = 0, 0
    high = i0 >= n_in - 1
    i0[high], frac[high] = n_in - 1, 0
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, frac


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``[..., h, w]`` float maps to ``size = (H, W)`` like ``cv2.resize(img, (W, H))``.

    Bilinear with half-pixel centres and edge clamping (OpenCV's INTER_LINEAR), separable,
    horizontal pass first, in float32.
    """
    x = np.asarray(images, dtype=np.float32)
    H, W = int(size[0]), int(size[1])
    h, w = x.shape[-2:]
    if (h, w) == (H, W):
        return x.copy()
    c0, c1, fx = _linear_taps(w, W)
    r0, r1, fy = _linear_taps(h, H)
    rows = x[..., c0] * (1 - fx) + x[..., c1] * fx
    return (rows[..., r0, :] * (1 - fy)[:, None] + rows[..., r1, :] * fy[:, None]).astype(np.float32, copy=False)


def scale_cam(cams: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Per-image ``(c - min) / (max + 1e-7)``, then resize to ``size = (H, W)`` if given.

    pytorch-grad-cam's ``scale_cam_image`` (which takes ``(W, H)``; we take ``(H, W)`` like
    every other shape in this package). Returns a new float32 array.
    """
    c = np.array(cams, dtype=np.float32)
    c -= c.min(axis=(-2, -1), keepdims=True)
    c /= np.float32(NORM_EPS) + c.max(axis=(-2, -1), keepdims=True)
    return resize_bilinear(c, size) if size is not None else c


def upsample_cams(cams: Sequence[np.ndarray] | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Steps 3-4 of the pipeline: ``[B, h, w]`` ReLU'd maps (or a list of them, one per layer,
    averaged like pytorch-grad-cam's ``aggregate_multi_layers``) -> ``[B, H, W]`` in [0, 1)."""
    per_layer = [cams] if isinstance(cams, np.ndarray) else list(cams)
    total = None
    for c in per_layer:
        scaled = scale_cam(c, size)
        np.maximum(scaled, 0, out=scaled)
        total = scaled if total is None else np.add(total, scaled, out=total)
    if len(per_layer) > 1:
        total /= np.float32(len(per_layer))
    return scale_cam(total)


def cam_maps(method: str, activations: np.ndarray, gradients: np.ndarray, size: tuple[int, int], *,
             layout: str | Layout = NCHW) -> np.ndarray:
    """The whole pipeline: ``[B, H, W]`` float32 maps, equal to pytorch-grad-cam's
    ``grayscale_cam`` for one target layer."""
    return upsample_cams(cam_image(method, activations, gradients, layout=layout), size)


# --------------------------------------------------------------------------- ONNX emission


class _Sym:
    """A tensor name in a graph under construction; arithmetic emits ONNX nodes."""

    def __init__(self, kernel: _GraphKernel, name: str):
        self.k, self.name = kernel, name

    def _bin(self, op: str, other, reverse: bool = False) -> _Sym:
        o = other if isinstance(other, _Sym) else self.k.const(other)
        a, b = (o, self) if reverse else (self, o)
        return self.k.op(op, a, b)

    def __mul__(self, o): return self._bin("Mul", o)
    def __rmul__(self, o): return self._bin("Mul", o, True)
    def __add__(self, o): return self._bin("Add", o)
    def __radd__(self, o): return self._bin("Add", o, True)
    def __sub__(self, o): return self._bin("Sub", o)
    def __rsub__(self, o): return self._bin("Sub", o, True)
    def __truediv__(self, o): return self._bin("Div", o)
    def __rtruediv__(self, o): return self._bin("Div", o, True)


class _GraphKernel:
    """The same reductions as :class:`_NumpyKernel`, emitted as ONNX nodes (opset >= 13)."""

    def __init__(self, layout: Layout, opset: int, prefix: str):
        self.layout, self.opset, self.prefix = layout, opset, prefix
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def _name(self, what: str) -> str:
        self._count += 1
        return f"{self.prefix}/{what}_{self._count}"

    def const(self, value, dtype=np.float32) -> _Sym:
        from onnx import numpy_helper

        name = self._name("const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return _Sym(self, name)

    def op(self, op_type: str, *inputs: _Sym | str | None, **attrs) -> _Sym:
        from onnx import helper

        out = self._name(op_type)
        names = [i.name if isinstance(i, _Sym) else (i or "") for i in inputs]
        self.nodes.append(helper.make_node(op_type, names, [out], name=out, **attrs))
        return _Sym(self, out)

    def _reduce(self, op_type: str, x: _Sym, axes: Sequence[int], keepdims: int) -> _Sym:
        axes_input_since = 13 if op_type == "ReduceSum" else 18
        if self.opset >= axes_input_since:
            return self.op(op_type, x, self.const(list(axes), np.int64), keepdims=keepdims)
        return self.op(op_type, x, axes=list(axes), keepdims=keepdims)

    def spatial_mean(self, x):
        return self._reduce("ReduceMean", x, self.layout.spatial, 1)

    def spatial_sum(self, x):
        return self._reduce("ReduceSum", x, self.layout.spatial, 1)

    def channel_sum(self, x):
        return self._reduce("ReduceSum", x, [self.layout.channel], 0)

    def relu(self, x):
        return self.op("Relu", x)

    def where_nonzero(self, test, x):
        zero = self.const(0.0)
        return self.op("Where", self.op("Equal", test, zero), zero, x)


@dataclass(frozen=True)
class CamOutput:
    """One emitted map: graph output ``output`` holds ``relu(method(A, G))`` ``[B, h, w]``."""

    layer: str
    method: str
    output: str


def add_cam_outputs(model, pairs: dict[str, tuple[str, str]], methods: Sequence[str] = ("gradcam",), *,
                    layout: str | Layout | dict[str, str | Layout] = NCHW, keep_outputs: Sequence[str] = ()):
    """Return a copy of ``model`` whose outputs are CAMs instead of activations and gradients.

    Parameters
    ----------
    model : onnx.ModelProto
        A gradient model: it computes, for every layer, the activation and its gradient.
        It is not changed.
    pairs : dict
        ``layer -> (activation tensor name, gradient tensor name)`` in ``model``.
    methods : names in :data:`CAM_METHODS`
        Maps to emit for every layer.
    layout : the feature maps' layout, one for all or a dict ``layer -> layout``.
    keep_outputs : other graph outputs to keep (e.g. the logits); everything else is dropped.

    Returns
    -------
    (onnx.ModelProto, list[CamOutput])
        The new model and, in output order, what each CAM output holds.
    """
    import onnx
    from onnx import TensorProto, helper

    specs = [check_method(m) for m in methods]
    layouts = {layer: get_layout(layout[layer] if isinstance(layout, dict) else layout) for layer in pairs}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise BlackboxCamError(f"CAM emission needs ONNX opset >= 13, the model has {opset}; "
                               "convert it first (blackbox_cam.gradients.prepare_model)")
    known = ({v.name for v in model.graph.input} | {v.name for v in model.graph.output}
             | {o for n in model.graph.node for o in n.output})
    for layer, (a, g) in pairs.items():
        missing = [t for t in (a, g) if t not in known]
        if missing:
            raise BlackboxCamError(f"layer {layer!r}: tensors {missing} are not in the gradient model")

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    kept = [o for o in graph.output if o.name in set(keep_outputs)]
    del graph.output[:]
    graph.output.extend(kept)
    emitted: list[CamOutput] = []
    for i, (layer, (a, g)) in enumerate(pairs.items()):
        for spec in specs:
            k = _GraphKernel(layouts[layer], opset, f"cam{i}/{spec.name}")
            cam = k.relu(spec.formula(_Sym(k, a), _Sym(k, g), k))
            graph.node.extend(k.nodes)
            graph.initializer.extend(k.initializers)
            graph.output.append(helper.make_tensor_value_info(cam.name, TensorProto.FLOAT, None))
            emitted.append(CamOutput(layer, spec.name, cam.name))
    return out, emitted
