"""The model reader: what an ONNX classifier's graph says about itself, read once.

:func:`read_model` turns an ``onnx.ModelProto`` into a frozen :class:`ModelSignature`: the
image input (name, dims, dtype, layout, channels, spatial size, fixed batch), the output that
holds the class scores, and whether that output is a Softmax (looked through the shape-only
ops exporters put after it). It is a pure function of the graph and the caller's overrides:
it makes no session and runs nothing, so the runtime (:class:`blackbox_cam.model.runtime.Classifier`),
the gradient builder (:mod:`blackbox_cam.gradients`) and the white-box methods
(:mod:`blackbox_cam.methods.gradcam`) all receive the same facts instead of reading the
graph each with its own rules.

The graph helpers below (:func:`dims`, :func:`graph_inputs`, :func:`producers`,
:func:`consumers`, :func:`softmax_tail`) are the one implementation of each rule; the
gradient package uses them on its prepared copy of the graph.

What the graph cannot say (the number of classes when the output dims are symbolic, whether
an output without a Softmax node already holds probabilities) the classifier learns from one
probe run (:meth:`blackbox_cam.model.runtime.Classifier._probe`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import onnx

from ..errors import BlackboxCamError
from .graph import (SHAPE_ONLY, consumers, dims, graph_inputs, producers, softmax_tail,  # noqa: F401 (re-exported)
                    static_shape, value_dims)
from .detections import DetectorLayout, read_layout, ultralytics_metadata
from .preprocess import LAYOUTS

TASKS = ("classifier", "detector")
#: Element types an image input may have, and the numpy dtype it is fed as.
INPUT_DTYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
                onnx.TensorProto.UINT8: np.uint8}


@dataclass(frozen=True)
class ModelSignature:
    """What :func:`read_model` found; every consumer of the model reads these, not the graph.

    Attributes
    ----------
    input_name, input_dims : the one image input and its dims (ints, symbols, or None).
    input_dtype : numpy dtype the input is fed as (float32, float16 or uint8).
    layout : ``NCHW`` or ``NHWC``.
    channels : 1 or 3.
    input_size : ``(H, W)``.
    fixed_batch : the batch dimension when the graph fixes it, else None.
    output_name : the output holding the class scores; ``output_names`` all outputs.
    output_dims : its dims.
    softmax : the output is made by a Softmax, possibly behind :data:`SHAPE_ONLY` ops, so it
        holds probabilities (pytorch-grad-cam then differentiates the probability).
    sigmoid : the output is made by a Sigmoid (behind :data:`SHAPE_ONLY` ops): with width 1, a
        binary classifier's probability of the positive class.
    metadata : the model's ``metadata_props`` as ``(key, value)`` pairs (class names live there
        in many exports; :mod:`blackbox_cam.model.labels` reads them).
    task : ``classifier`` or ``detector`` (one of :data:`TASKS`), decided from the outputs, the
        metadata and the sidecar's ``"detector"`` key; ``task_reason`` says why in one line.
    detector : the :class:`~blackbox_cam.model.detections.DetectorLayout` of a detector, else None.
    """

    input_name: str
    input_dims: tuple
    input_dtype: type
    layout: str
    channels: int
    input_size: tuple[int, int]
    fixed_batch: int | None
    output_name: str
    output_names: tuple[str, ...]
    output_dims: tuple
    softmax: bool
    sigmoid: bool = False
    metadata: tuple[tuple[str, str], ...] = ()
    task: str = "classifier"
    task_reason: str = ""
    detector: DetectorLayout | None = None

    @property
    def static_classes(self) -> int | None:
        """The number of classes if the output dims fix it (``[N, C]``), else None."""
        last = self.output_dims[-1] if len(self.output_dims) == 2 else None
        return last if isinstance(last, int) and last > 0 else None


def detect_layout(d: Sequence) -> str | None:
    """NCHW if dim 1 looks like channels (1 or 3) and dim 3 does not; NHWC the other way round."""
    c1, c3 = d[1], d[3]
    if c1 in (1, 3) and c3 not in (1, 3):
        return "NCHW"
    if c3 in (1, 3) and c1 not in (1, 3):
        return "NHWC"
    if c1 in (1, 3):
        return "NCHW"
    return None


# -- the reader ------------------------------------------------------------------------------------
def read_model(model: onnx.ModelProto, *, layout: str | None = None, input_size: Sequence[int] | None = None,
               output: str | int | None = None, source: str = "the model",
               detector: dict | None = None) -> ModelSignature:
    """Read ``model``'s signature; every problem is one :class:`BlackboxCamError` naming ``source``.

    Parameters
    ----------
    layout : ``NCHW``/``NHWC``; detected from the input dims when None.
    input_size : ``(H, W)`` for inputs whose spatial dims are symbolic.
    output : name or index of the class-score output; default the first 2-D output (else the first).
    source : how errors name the model (its path).
    detector : the sidecar's ``"detector"`` object, declaring a detector layout
        (:func:`blackbox_cam.model.detections.read_layout`).

    The task is ``detector`` when :func:`~blackbox_cam.model.detections.read_layout` finds a
    layout (outputs, names, Ultralytics ``metadata_props``, or the sidecar's declaration) and no
    ``output`` was chosen; otherwise ``classifier``, exactly as before detectors were read.
    """
    vi = _image_input(model.graph, source)
    elem = vi.type.tensor_type.elem_type
    if elem not in INPUT_DTYPES:
        raise BlackboxCamError(f"{source}: input '{vi.name}' has element type "
                               f"{onnx.TensorProto.DataType.Name(elem)}; supported are float32, float16, uint8")
    d = dims(vi) or ()
    if len(d) != 4:
        raise BlackboxCamError(f"{source}: input '{vi.name}' has shape {list(d)}, not an image tensor; "
                               "expected [N,3,H,W] (NCHW) or [N,H,W,3] (NHWC)")
    lay = _layout(vi.name, d, layout, source)
    c, h, w = (d[1], d[2], d[3]) if lay == "NCHW" else (d[3], d[1], d[2])
    if c not in (1, 3):
        raise BlackboxCamError(f"{source}: input '{vi.name}' {list(d)} has {c} channels in {lay} layout; "
                               "expected 1 or 3 (wrong --layout?)")
    imgsz = ultralytics_metadata([(p.key, p.value) for p in model.metadata_props]).get("imgsz")
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        size = (h, w)
    elif input_size:
        size = (int(input_size[0]), int(input_size[1]))
    elif isinstance(imgsz, (list, tuple)) and len(imgsz) == 2 and all(isinstance(v, int) and v > 0 for v in imgsz):
        size = (int(imgsz[0]), int(imgsz[1]))  # a dynamic Ultralytics export: the size it was exported at
    else:
        raise BlackboxCamError(f"{source}: input '{vi.name}' {list(d)} has no fixed height/width; "
                               "give input_size [H, W] in the sidecar JSON")
    out = _scores_output(model.graph, output, source)
    sig = ModelSignature(
        input_name=vi.name, input_dims=tuple(d), input_dtype=INPUT_DTYPES[elem], layout=lay, channels=int(c),
        input_size=size, fixed_batch=d[0] if isinstance(d[0], int) and d[0] > 0 else None,
        output_name=out.name, output_names=tuple(o.name for o in model.graph.output),
        output_dims=dims(out) or (), softmax=softmax_tail(model.graph, out.name) is not None,
        sigmoid=softmax_tail(model.graph, out.name, "Sigmoid") is not None,
        metadata=tuple((p.key, p.value) for p in model.metadata_props))
    found = read_layout(model, sig, detector, source) if output is None or detector else None
    if found is None:
        shape = list(sig.output_dims)
        return replace(sig, task="classifier",
                       task_reason=f"output '{out.name}' {shape}: class scores" if len(shape) == 2 else
                       f"output '{out.name}' {shape}: read as class scores (no detector layout matches)")
    return replace(sig, task="detector", task_reason=found.reason, detector=found,
                   output_name=found.outputs[0], output_dims=value_dims(model.graph, found.outputs[0]) or ())


def _image_input(graph: onnx.GraphProto, source: str) -> onnx.ValueInfoProto:
    ins = graph_inputs(graph)
    if len(ins) != 1:
        names = ", ".join(i.name for i in ins) or "none"
        raise BlackboxCamError(f"{source}: the model has {len(ins)} inputs ({names}); blackbox-cam explains "
                               "image classifiers and detectors with exactly one image input")
    return ins[0]


def _layout(name: str, d: Sequence, layout: str | None, source: str) -> str:
    lay = layout or detect_layout(d)
    if lay is None:
        raise BlackboxCamError(f"{source}: cannot tell the layout of input '{name}' {list(d)}; "
                               "pass --layout NCHW or --layout NHWC")
    lay = str(lay).upper()
    if lay not in LAYOUTS:
        raise BlackboxCamError(f"unknown layout {lay!r}; choose NCHW or NHWC")
    return lay


def _scores_output(graph: onnx.GraphProto, output: str | int | None, source: str) -> onnx.ValueInfoProto:
    outs = list(graph.output)
    names = [o.name for o in outs]
    if output is None:
        return ([o for o in outs if len(dims(o) or ()) == 2] or outs)[0]
    if isinstance(output, int) or (isinstance(output, str) and output.isdigit()):
        i = int(output)
        if not 0 <= i < len(outs):
            raise BlackboxCamError(f"{source}: --output {i} out of range; outputs are {names}")
        return outs[i]
    if output in names:
        return outs[names.index(output)]
    raise BlackboxCamError(f"{source}: no output named {output!r}; outputs are {names}")
