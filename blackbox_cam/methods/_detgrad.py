"""What the Grad-CAM family needs to explain one detection: its candidate, its score, its layer.

A detection is one candidate of the head (before NMS) and one class. Its score is one element of
a *score tensor* the graph computes, so the gradient graph (:mod:`blackbox_cam.gradients`)
differentiates that tensor with a one-hot *seed* at the element, exactly as it differentiates a
classifier's ``[N, C]`` scores with a one-hot row (Selvaraju et al. 2017, eq. 1; per detection as
in ODAM, Zhao et al., ICLR 2023: "the gradient of one prediction's class score"). For an
Ultralytics ``[B, 4+C, A]`` head the score tensor is the output itself and the element
``[b, 4 + c, a]``: the class *probability* (the head's Sigmoid is inside the graph), which is
what the model returns and what pytorch-grad-cam differentiates with a target
``output[4 + c, a]``. For the other heads :func:`score_model` appends to the graph the score the
detector's decoding computes (:func:`blackbox_cam.model.detections.decode`): YOLOv5 / YOLOX
``objectness x class probability`` (``output[a, 4] * output[a, 5 + c]``, YOLOv5's ``conf``),
DETR's softmax without the no-object slot; the element is ``[b, a, c]``.

The layer: the neck map of the candidate's level (:mod:`blackbox_cam.gradients._heads`), unless
the reader picks one.

A detection target reaches a hook as

* :class:`CandidateTarget` ``(candidate, cls, box)``: the candidate index on the unmasked image,
  its class, its box in model-input pixels (optional; used by EigenCAM's ``--in-box``);
* or a single-detection target of the method contract (``kind == "detection"``, with ``boxes``
  ``[1, 4]`` and ``classes`` ``[1]``): its ``candidates`` ``[1]`` (the ``Detections.candidate``
  index) when it carries them, else, for a box the model did not report, the candidate with the
  largest ``IoU(box, candidate box) x score(class | candidate)`` (probability x objectness) on
  the unmasked image (one query).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import BlackboxCamError

#: Kinds whose class score is one element of a tensor the graph computes (the raw output, or a
#: score head appended by :func:`score_model`); NMS-inside kinds are not (their candidates are
#: the K detections after NMS). RT-DETR's ``[B, Q, 4 + C]`` would be the same as DETR's; it is
#: not listed until checked against pytorch-grad-cam.
SCORED_KINDS = ("ultralytics", "yolov5", "yolox", "detr")
#: The candidate axis of the first output, per kind (where the head's levels are concatenated).
CANDIDATE_AXIS = {"ultralytics": 2, "yolov5": 1, "yolox": 1, "rtdetr": 1}


@dataclass(frozen=True)
class CandidateTarget:
    """One detection to explain: candidate ``candidate`` (its index before NMS), class ``cls``,
    and its box ``(x0, y0, x1, y1)`` in model-input pixels when known."""

    candidate: int
    cls: int
    box: tuple[float, float, float, float] | None = None
    kind: str = "detection"

    @property
    def index(self) -> int:
        """The class (what ``Explanation.target`` records)."""
        return int(self.cls)


def layout_of(model: Any):
    """The detector layout of a model (``signature.detector``), or None for a classifier."""
    return getattr(getattr(model, "signature", None), "detector", None)


def is_detection(target: Any) -> bool:
    return getattr(target, "kind", None) == "detection"


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def candidate_target(model: Any, x: np.ndarray, target: Any) -> CandidateTarget:
    """The :class:`CandidateTarget` of a detection target (see the module docstring)."""
    if isinstance(target, CandidateTarget):
        return target
    if not is_detection(target):
        raise BlackboxCamError(f"not a detection target: {target!r}")
    boxes = np.asarray(target.boxes, np.float64).reshape(-1, 4)
    classes = np.asarray(target.classes, np.int64).reshape(-1)
    if len(boxes) != 1:
        raise BlackboxCamError(f"a white-box method explains one detection at a time, got {len(boxes)}")
    cls, box = int(classes[0]), tuple(float(v) for v in boxes[0])
    known = getattr(target, "candidates", None)
    if known is not None and int(np.asarray(known).reshape(-1)[0]) >= 0:
        return CandidateTarget(int(np.asarray(known).reshape(-1)[0]), cls, box)
    cand = model.candidates(np.asarray(x, np.float32)[None])
    score = np.asarray(cand.probs[0, :, cls], np.float64) * np.asarray(cand.objectness[0], np.float64)
    fit = _iou(np.asarray(box), np.asarray(cand.boxes[0], np.float64)) * score
    if not np.any(fit > 0):
        raise BlackboxCamError(f"no candidate of the model overlaps the box {[round(v, 1) for v in box]} with any "
                               f"probability of class {cls}: there is no candidate to differentiate")
    return CandidateTarget(int(np.argmax(fit)), cls, box)


def check_layout(model: Any, method: str) -> Any:
    """The model's detector layout if the gradient family can read one score element of it."""
    return check_kind(layout_of(model), method)


def check_kind(lay: Any, method: str) -> Any:
    """``lay`` if it is a detector layout with a score per candidate and class, else one line."""
    if lay is None:
        raise BlackboxCamError(f"{method}: a detection target needs a detector")
    if lay.kind not in SCORED_KINDS:
        raise BlackboxCamError(
            f"{method} per detection differentiates one candidate's class score before NMS, which "
            f"{', '.join(SCORED_KINDS)} heads give; this is a {lay.kind} head"
            f"{' (its candidates come after NMS)' if lay.nms_inside else ''}; use drise, decam or occlusion")
    return lay


def _direct(lay: Any) -> bool:
    """An Ultralytics head whose output already holds the probabilities: its element is differentiated
    as it is (``output[b, 4 + c, a]``, what pytorch-grad-cam's target picks), no score head."""
    return lay.kind == "ultralytics" and lay.scores == "prob"


def score_model(model: Any, lay: Any) -> tuple[Any, str]:
    """``(model, name)``: the model with the tensor whose element ``[b, *score_element(a, c)]`` is
    candidate ``a``'s score for class ``c``, computed as the detector's decoding computes it
    (:func:`blackbox_cam.model.detections.decode`: probabilities by the layout's ``scores`` rule,
    times the objectness column where the head has one), as a graph output. ``model`` (an
    ``onnx.ModelProto``) is not changed; an Ultralytics probability head needs no new node."""
    import onnx
    from onnx import helper, numpy_helper

    check_kind(lay, "Grad-CAM")
    out = lay.outputs[0]
    if _direct(lay):
        return model, out
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes, inits = [], []

    def const(name: str, values) -> str:
        inits.append(numpy_helper.from_array(np.asarray(values, np.int64), f"detscore/{name}"))
        return f"detscore/{name}"

    def cut(src: str, start: int, end: int, axis: int, name: str) -> str:
        nodes.append(helper.make_node("Slice", [src, const(f"{name}/s", [start]), const(f"{name}/e", [end]),
                                              const(f"{name}/a", [axis])], [f"detscore/{name}"],
                                      name=f"detscore/{name}/Slice"))
        return f"detscore/{name}"

    def probabilities(z: str) -> str:
        rule = lay.scores
        if rule == "prob":
            return z
        op = "Sigmoid" if rule == "sigmoid" else "Softmax"
        nodes.append(helper.make_node(op, [z], [f"{z}/{op}"], name=f"{z}/{op}", **({} if op == "Sigmoid" else
                                                                                  {"axis": -1})))
        z = f"{z}/{op}"
        return cut(z, 0, -1, -1, "drop_noobject") if rule == "softmax-noobj" else z

    big = 2 ** 62
    if lay.kind == "ultralytics":  # [B, 4 + C, A] -> [B, C, A]
        score = probabilities(cut(out, 4, big, 1, "classes"))
    elif lay.kind in ("yolov5", "yolox"):  # [B, A, 5 + C]: objectness x class probabilities
        probs = probabilities(cut(out, 5, big, 2, "classes"))
        nodes.append(helper.make_node("Mul", [cut(out, 4, 5, 2, "objectness"), probs], ["detscore/score"],
                                      name="detscore/Mul"))
        score = "detscore/score"
    else:  # detr: logits [B, Q, C (+ 1)]
        score = probabilities(out)
    m.graph.node.extend(nodes)
    m.graph.initializer.extend(inits)
    m.graph.output.append(helper.make_tensor_value_info(score, onnx.TensorProto.FLOAT, None))
    return m, score


def differentiated(lay: Any) -> str:
    """What the gradient is taken of, in words (the records' ``differentiated``)."""
    rule = {"prob": "", "sigmoid": " (sigmoid of the class logit)", "softmax": " (softmax of the logits)",
            "softmax-noobj": " (softmax of the logits, no-object slot dropped)"}.get(lay.scores, "")
    if lay.kind in ("yolov5", "yolox"):
        return f"objectness x class probability{rule} (the output's columns 4 and 5 + c)"
    if _direct(lay):
        return "class probability (the output element)"
    return f"class probability{rule}"


def score_element(lay: Any, candidate: int, cls: int) -> tuple[int, int]:
    """Where candidate ``candidate``'s score for class ``cls`` is in :func:`score_model`'s tensor
    (after the batch axis): ``(4 + c, a)`` in an Ultralytics output, ``(c, a)`` in its sigmoid
    head, else ``(a, c)``."""
    if lay.kind == "ultralytics":
        return (4 + cls, candidate) if _direct(lay) else (cls, candidate)
    return candidate, cls


def seeds(model: Any, output_dims: Sequence, targets: Sequence[CandidateTarget]) -> np.ndarray:
    """One-hot seeds ``[N, *output_dims[1:]]`` of the score tensor: 1 at each target's element."""
    lay = check_layout(model, "Grad-CAM")
    shape = tuple(output_dims[1:])
    if not all(isinstance(d, int) and d > 0 for d in shape):
        raise BlackboxCamError(f"the detector's score tensor has no fixed shape {list(output_dims)}")
    seed = np.zeros((len(targets),) + shape, np.float32)
    for i, t in enumerate(targets):
        at = score_element(lay, int(t.candidate), int(t.cls))
        if not all(0 <= k < d for k, d in zip(at, shape)):
            raise BlackboxCamError(f"candidate {t.candidate}, class {t.cls} is outside the score tensor "
                                   f"{list(output_dims)}")
        seed[(i,) + at] = 1.0
    return seed


def box_pixels(box: Sequence[float], size: Sequence[int]) -> tuple[int, int, int, int]:
    """A box in model pixels as the integer slice bounds pytorch-grad-cam's YOLO tutorial uses
    (``int()`` of each coordinate, after clipping to the input)."""
    H, W = int(size[0]), int(size[1])
    x0, y0, x1, y1 = (int(v) for v in np.clip(np.asarray(box, np.float64), 0, [W, H, W, H]))
    return x0, y0, x1, y1
