"""What a method explains: a class of a classifier, or detections of a detector.

A black-box method asks one question of the model, "how much of the target is left in this
masked image?", and never needs to know what kind of model answers it. A *target* owns that
question: :meth:`scores` takes a batch of model-space images and returns a matrix
``[N images, T targets]``, one column per thing explained, from **one** model call per batch,
so every target of an image is explained from the same masked images (the methods produce
``T`` maps from one query set). Two kinds, each with one scoring rule:

:class:`ClassTarget` (classifiers)
    The probability of each class (``Classifier.probabilities``), as every method always
    scored it; a plain ``int`` class index is still accepted everywhere (:func:`as_target`).
:class:`DetectionTarget` (detectors)
    D-RISE's similarity (Petsiuk et al., "Black-box Explanation of Object Detectors via
    Saliency Maps", CVPR 2021, sec. 3.2, Eq. 1-2) of each target detection ``t`` to the
    masked image's detections ``j``, best over ``j``::

        s(t, j) = IoU(box_t, box_j) * cos(P_t, P_j) * O_j,      score_t = max_j s(t, j)

    over every candidate of the masked image *before* NMS (:func:`drise_similarity`), so a
    detection that would be suppressed or fall under the threshold still counts with its
    similarity. ``P`` are class-probability vectors and ``O`` objectness. A detector without
    an objectness output (Ultralytics YOLOv8/v11, DETR with sigmoid scores) has ``O = 1`` in
    :class:`blackbox_cam.model` 's candidates; the similarity then uses the candidate's best
    class probability as its objectness (``O_j = max_c P_j,c``), the convention xaitk-saliency's
    occlusion scoring uses for single-score detectors: without it ``cos`` is blind to
    confidence (a masked-out object's faint class vector still points the same way) and a map
    would show where the box is drawn, not what makes it a detection. A detector that has an
    objectness keeps it.

A target may hold several detections (``T > 1``); :meth:`DetectionTarget.one` takes the ``i``-th
(what one explanation reports). A detection target may also be a *virtual* detection: a box the
model did not report with a one-hot class vector and objectness 1 (``--box x0,y0,x1,y1
--target LABEL``), "what would the model need to see there to report this".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, Union

import numpy as np

from ..errors import BlackboxCamError


class Target(Protocol):
    """What every target offers the methods."""

    kind: str

    @property
    def count(self) -> int: ...

    def scores(self, model: Any, x: np.ndarray) -> np.ndarray: ...

    def one(self, i: int) -> "Target": ...


@dataclass(frozen=True)
class ClassTarget:
    """One or more classes of a classifier; the score of an image is each class's probability."""

    classes: tuple[int, ...]
    kind: str = field(default="class", init=False)

    @property
    def count(self) -> int:
        return len(self.classes)

    @property
    def index(self) -> int:
        """The class of a single-class target (what ``Explanation.target`` records)."""
        return int(self.classes[0])

    def scores(self, model: Any, x: np.ndarray) -> np.ndarray:
        """``[N, T]`` what is explained of the classes for the model-space batch ``x`` (counted
        queries): their probabilities, or their log-odds under ``--score log-odds``
        (:meth:`~blackbox_cam.model.runtime.Classifier.explained_scores`)."""
        fn = getattr(model, "explained_scores", None)
        out = fn(x) if fn is not None else model.probabilities(x)
        return np.asarray(out, np.float64)[:, list(self.classes)]

    def one(self, i: int) -> ClassTarget:
        return ClassTarget((int(self.classes[i]),))


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of the rows of ``a`` ``[T, C]`` with ``b`` ``[..., A, C]`` -> ``[..., T, A]``."""
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    dot = np.einsum("tc,...ac->...ta", a, b)
    den = na[:, None] * nb[..., None, :]
    return np.divide(dot, den, out=np.zeros_like(dot), where=den > 0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` ``[T, 4]`` with ``b`` ``[..., A, 4]`` (x0, y0, x1, y1) -> ``[..., T, A]``."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    x0 = np.maximum(a[:, None, 0], b[..., None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[..., None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[..., None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[..., None, :, 3])
    inter = np.clip(x1 - x0, 0.0, None) * np.clip(y1 - y0, 0.0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a[:, None] + area_b[..., None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def drise_similarity(boxes: np.ndarray, probs: np.ndarray, cand_boxes: np.ndarray, cand_probs: np.ndarray,
                     cand_objectness: np.ndarray) -> np.ndarray:
    """D-RISE's similarity of each target to the best candidate of each image: ``[N, T]``.

    ``boxes`` ``[T, 4]`` and ``probs`` ``[T, C]`` are the targets; ``cand_*`` the candidates
    ``[N, A, 4]``, ``[N, A, C]``, ``[N, A]`` of ``N`` images. ``max_j IoU(b_t, b_j) cos(P_t, P_j) O_j``
    (Petsiuk et al. 2021, Eq. 1-2; xaitk-saliency's ``DRISEScoring`` computes the same).
    """
    s = box_iou(boxes, cand_boxes) * _cos(np.asarray(probs, np.float64), np.asarray(cand_probs, np.float64))
    s = s * np.asarray(cand_objectness, np.float64)[..., None, :]
    return s.max(axis=-1) if s.shape[-1] else np.zeros(s.shape[:-1])


def candidate_objectness(candidates: Any) -> np.ndarray:
    """The ``O_j`` of the similarity: the candidates' objectness where the detector has one, else
    (objectness 1 everywhere) each candidate's best class probability (see the module docstring)."""
    obj = np.asarray(candidates.objectness, np.float64)
    if getattr(candidates, "has_objectness", None) is False or (obj.size and np.all(obj == 1.0)):
        return np.asarray(candidates.probs, np.float64).max(axis=-1)
    return obj


@dataclass(frozen=True, eq=False)
class DetectionTarget:
    """``T`` detections to explain, in model-input pixels: boxes ``[T, 4]`` (x0, y0, x1, y1),
    class-probability vectors ``[T, C]`` and objectness ``[T]``.

    ``classes`` ``[T]`` is each detection's class (its label), ``detections`` its index in the
    image's detections (``-1`` for a virtual box), ``image_boxes`` ``[T, 4]`` its box in the
    image's pixels (what records and pictures show), ``confidences`` the detector's score of each,
    ``candidates`` its candidate index on the unmasked image (``Detections.candidate``; ``-1`` for
    a virtual box): what the Grad-CAM family differentiates (:mod:`._detgrad`).
    """

    boxes: np.ndarray
    probs: np.ndarray
    objectness: np.ndarray
    classes: np.ndarray
    detections: np.ndarray
    image_boxes: np.ndarray | None = None
    confidences: np.ndarray | None = None
    candidates: np.ndarray | None = None
    kind: str = field(default="detection", init=False)

    def __post_init__(self) -> None:
        b = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        object.__setattr__(self, "boxes", b)
        p = np.asarray(self.probs, np.float64)
        object.__setattr__(self, "probs", p.reshape(len(b), p.shape[-1] if p.ndim == 2 else -1))
        object.__setattr__(self, "objectness", np.asarray(self.objectness, np.float64).reshape(len(b)))
        object.__setattr__(self, "classes", np.asarray(self.classes, np.int64).reshape(len(b)))
        object.__setattr__(self, "detections", np.asarray(self.detections, np.int64).reshape(len(b)))
        if self.image_boxes is not None:
            object.__setattr__(self, "image_boxes", np.asarray(self.image_boxes, np.float64).reshape(len(b), 4))
        if self.confidences is not None:
            object.__setattr__(self, "confidences", np.asarray(self.confidences, np.float64).reshape(len(b)))
        if self.candidates is not None:
            object.__setattr__(self, "candidates", np.asarray(self.candidates, np.int64).reshape(len(b)))

    @property
    def count(self) -> int:
        return len(self.boxes)

    @property
    def index(self) -> int:
        """The class of a single detection (what ``Explanation.target`` records)."""
        return int(self.classes[0])

    def scores(self, model: Any, x: np.ndarray) -> np.ndarray:
        """``[N, T]``: each target's D-RISE similarity on each image of the batch (one model call,
        counted as ``N`` queries by the detector)."""
        return self.score_candidates(model.candidates(x))

    def score_candidates(self, candidates: Any) -> np.ndarray:
        """:func:`drise_similarity` on candidates the caller already has (``[N, T]``)."""
        return drise_similarity(self.boxes, self.probs, candidates.boxes, candidates.probs,
                                candidate_objectness(candidates))

    def one(self, i: int) -> DetectionTarget:
        return self.select([int(i)])

    def select(self, keep: Sequence[int]) -> DetectionTarget:
        """The targets at positions ``keep``, in that order."""
        k = np.asarray(list(keep), np.int64)
        opt = {f: None if getattr(self, f) is None else getattr(self, f)[k]
               for f in ("image_boxes", "confidences", "candidates")}
        return DetectionTarget(self.boxes[k], self.probs[k], self.objectness[k], self.classes[k], self.detections[k],
                               **opt)

    @staticmethod
    def virtual(box: Sequence[float], label: int, num_classes: int, image_box: Sequence[float] | None = None
                ) -> DetectionTarget:
        """A box the model did not report, as a detection of class ``label`` (one-hot, objectness 1)."""
        if not 0 <= int(label) < int(num_classes):
            raise BlackboxCamError(f"class {label} is out of range: the model has {num_classes} classes")
        p = np.zeros((1, int(num_classes)))
        p[0, int(label)] = 1.0
        return DetectionTarget(np.asarray(box, np.float64)[None], p, np.ones(1), np.array([int(label)]),
                               np.array([-1]), None if image_box is None else np.asarray(image_box)[None], None,
                               np.array([-1]))


AnyTarget = Union[int, np.integer, ClassTarget, DetectionTarget]


def as_target(target: AnyTarget) -> ClassTarget | DetectionTarget:
    """A target object: an ``int`` class index (today's callers) becomes a one-class :class:`ClassTarget`."""
    if isinstance(target, (ClassTarget, DetectionTarget)):
        return target
    if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer)):
        raise BlackboxCamError(f"a target is a class index, a ClassTarget or a DetectionTarget, not {target!r}")
    return ClassTarget((int(target),))


def target_count(target: AnyTarget) -> int:
    return as_target(target).count
