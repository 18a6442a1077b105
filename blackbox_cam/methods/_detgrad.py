"""What the Grad-CAM family needs to explain one detection: its candidate, its score, its layer.

A detection is one candidate of the head (before NMS) and one class. Its score is one element of
the detector's raw output, so the gradient graph (:mod:`blackbox_cam.gradients`) differentiates
the output itself with a one-hot *seed* of the output's shape at that element, exactly as it
differentiates a classifier's ``[N, C]`` scores with a one-hot row (Selvaraju et al. 2017, eq. 1;
per detection as in ODAM, Zhao et al., ICLR 2023: "the gradient of one prediction's class
score"). For an Ultralytics ``[B, 4+C, A]`` head the element is ``[b, 4 + c, a]``: the class
*probability* (the head's Sigmoid is inside the graph), which is what the model returns and what
pytorch-grad-cam differentiates with a target ``output[4 + c, a]``.

The layer: the neck map of the candidate's level (:mod:`blackbox_cam.gradients._heads`), unless
the reader picks one.

A detection target reaches a hook as

* :class:`CandidateTarget` ``(candidate, cls, box)``: the candidate index on the unmasked image,
  its class, its box in model-input pixels (optional; used by EigenCAM's ``--in-box``);
* or a single-detection target of the method contract (``kind == "detection"``, with ``boxes``
  ``[1, 4]`` and ``classes`` ``[1]``): its ``candidates`` ``[1]`` (the ``Detections.candidate``
  index) when it carries them, else, for a box the model did not report, the candidate with the
  largest ``IoU(box, candidate box) * p(class | candidate)`` on the unmasked image (one query).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import BlackboxCamError

#: The element holding candidate ``a``'s probability of class ``c`` (after the batch axis), per
#: detector layout kind (:mod:`blackbox_cam.model.detections`); the first output holds it.
SCORE_ELEMENT = {
    "ultralytics": lambda a, c: (4 + c, a),  # [B, 4 + C, A]: sigmoid probabilities, no objectness
}  # RT-DETR's [B, Q, 4 + C] would be (a, 4 + c); not listed until checked against pytorch-grad-cam
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
    fit = _iou(np.asarray(box), np.asarray(cand.boxes[0], np.float64)) * np.asarray(cand.probs[0, :, cls], np.float64)
    if not np.any(fit > 0):
        raise BlackboxCamError(f"no candidate of the model overlaps the box {[round(v, 1) for v in box]} with any "
                               f"probability of class {cls}: there is no candidate to differentiate")
    return CandidateTarget(int(np.argmax(fit)), cls, box)


def check_layout(model: Any, method: str) -> Any:
    """The model's detector layout if the gradient family can read one score element of it."""
    lay = layout_of(model)
    if lay is None:
        raise BlackboxCamError(f"{method}: a detection target needs a detector")
    if lay.kind not in SCORE_ELEMENT:
        raise BlackboxCamError(
            f"{method} per detection reads the class probability as one element of the head's output, which "
            f"{', '.join(SCORE_ELEMENT)} heads have; this is a {lay.kind} head (its score is not one element"
            f"{': the candidates come after NMS' if lay.nms_inside else ''}); use drise, decam or occlusion")
    return lay


def seeds(model: Any, output_dims: Sequence, targets: Sequence[CandidateTarget]) -> np.ndarray:
    """One-hot seeds ``[N, *output_dims[1:]]``: 1 at each target's score element."""
    lay = check_layout(model, "Grad-CAM")
    shape = tuple(output_dims[1:])
    if not all(isinstance(d, int) and d > 0 for d in shape):
        raise BlackboxCamError(f"the detector's output {lay.outputs[0]!r} has no fixed shape {list(output_dims)}")
    seed = np.zeros((len(targets),) + shape, np.float32)
    for i, t in enumerate(targets):
        at = SCORE_ELEMENT[lay.kind](int(t.candidate), int(t.cls))
        if not all(0 <= k < d for k, d in zip(at, shape)):
            raise BlackboxCamError(f"candidate {t.candidate}, class {t.cls} is outside the output {list(output_dims)}")
        seed[(i,) + at] = 1.0
    return seed


def box_pixels(box: Sequence[float], size: Sequence[int]) -> tuple[int, int, int, int]:
    """A box in model pixels as the integer slice bounds pytorch-grad-cam's YOLO tutorial uses
    (``int()`` of each coordinate, after clipping to the input)."""
    H, W = int(size[0]), int(size[1])
    x0, y0, x1, y1 = (int(v) for v in np.clip(np.asarray(box, np.float64), 0, [W, H, W, H]))
    return x0, y0, x1, y1
