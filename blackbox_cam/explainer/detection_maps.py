"""Explaining a detector: which detections, scored once, explained from one query set.

``explain`` on a detector (:class:`blackbox_cam.model.detector.Detector`) runs here:

1. :func:`score_detections`: the image is prepared by the detector's pipeline and asked once
   for its candidates; thresholds and NMS (Ultralytics' defaults, ``--conf``, ``--iou``,
   ``--max-detections``) select its detections from those same candidates, and the boxes are
   mapped to the image's pixels.
2. :func:`choose_targets`: every detection (``--detection K``: one; ``--target LABEL``: those
   of a class), or a box the model did *not* report (``--box x0,y0,x1,y1 --target LABEL``, image
   pixels: a virtual detection there, one-hot class vector, objectness 1), as one
   :class:`~blackbox_cam.methods.targets.DetectionTarget`.
3. :func:`explain_detections`: one method call explains every chosen detection from the same
   masked images (:meth:`~blackbox_cam.methods.Call.run_targets`); their unmasked similarities
   come from step 1's candidates (the query is paid once and counted in each explanation), and
   each map comes back at the image's size as a :class:`~.pipeline.Result` with its box.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import BlackboxCamError
from ..methods import Call, DetectionTarget
from .pipeline import Result, check_finite, make_result, map_to_image, resolve_target


@dataclass(frozen=True)
class ScoredDetections:
    """One image asked once: its candidates and the detections selected from them."""

    image: np.ndarray        # H x W x 3 RGB float 0..255, as explained
    x: np.ndarray            # model space (C, H, W)
    candidates: Any          # the unmasked image's Candidates (batch of 1)
    detections: Any          # its Detections (model-input pixels)
    image_boxes: np.ndarray  # [K, 4] the detections' boxes in the image's pixels

    def __len__(self) -> int:
        return len(self.detections)


def score_detections(det, image: np.ndarray, *, conf: float | None = None, iou: float | None = None,
                     max_detections: int | None = None) -> ScoredDetections:
    """Prepare ``image``, ask the detector once (candidates), select its detections (thresholds, NMS)."""
    image = np.asarray(image, np.float32)
    x = det.prepare(image)
    cand = det.candidates(x[None])
    found = det.select(cand, conf=conf, iou=iou, max_detections=max_detections)[0]
    return ScoredDetections(image, x, cand, found, det.to_image_boxes(found.boxes, image.shape[:2]))


def parse_box(text: str | Sequence[float]) -> tuple[float, float, float, float]:
    """``"x0,y0,x1,y1"`` (or four numbers) -> a box; one line if it is not four numbers or empty."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        box = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        box = ()
    if len(box) != 4 or not all(np.isfinite(box)):
        raise BlackboxCamError(f"--box {text!r} is not four numbers x0,y0,x1,y1 (image pixels)")
    if not (box[2] > box[0] and box[3] > box[1]):
        raise BlackboxCamError(f"--box {','.join(f'{v:g}' for v in box)} is empty: need x1 > x0 and y1 > y0")
    return box  # type: ignore[return-value]


def to_model_boxes(det, boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Image-pixel boxes -> model-input pixels: the forward map whose inverse is
    :meth:`~blackbox_cam.model.detector.Detector.to_image_boxes` (the geometry's placement)."""
    pl = det.geometry.place(image_hw, det.input_size)
    top, left, nh, nw = pl.inner
    x0, y0, x1, y1 = pl.box
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.empty_like(b)
    out[:, [0, 2]] = (b[:, [0, 2]] - x0) * nw / (x1 - x0) + left
    out[:, [1, 3]] = (b[:, [1, 3]] - y0) * nh / (y1 - y0) + top
    return out


def choose_targets(det, scored: ScoredDetections, *, target: str | int | None = None, detection: int | None = None,
                   box: str | Sequence[float] | None = None) -> DetectionTarget:
    """The detections to explain (see the module docstring); may be empty (no detection, or none
    of ``target``'s class: the caller says so). Bad input is one :class:`BlackboxCamError` line."""
    h, w = scored.image.shape[:2]
    if box is not None:
        if target is None or str(target).lower() == "top1":
            raise BlackboxCamError("--box needs --target LABEL: the class the model should have reported there")
        if detection is not None:
            raise BlackboxCamError("--box and --detection exclude each other (a box the model did not report, or "
                                   "one of its detections)")
        b = parse_box(box)
        if b[0] < 0 or b[1] < 0 or b[2] > w or b[3] > h:
            raise BlackboxCamError(f"--box {','.join(f'{v:g}' for v in b)} is outside the image ({w} x {h} pixels: "
                                   f"0 <= x0 < x1 <= {w}, 0 <= y0 < y1 <= {h})")
        cls = resolve_target(det, target)
        return DetectionTarget.virtual(to_model_boxes(det, np.asarray(b), (h, w))[0], cls, det.num_classes, b)
    found = scored.detections
    keep = list(range(len(found)))
    if target is not None and str(target).lower() != "top1":
        cls = resolve_target(det, target)
        keep = [k for k in keep if int(found.classes[k]) == cls]
    if detection is not None:
        if not 0 <= int(detection) < len(found):
            have = f"{len(found)} detection(s) (0..{len(found) - 1})" if len(found) else "no detection"
            raise BlackboxCamError(f"--detection {detection} is beyond the count: the image has {have}")
        if int(detection) not in keep:
            raise BlackboxCamError(f"--detection {detection} is a {det.label(int(found.classes[int(detection)]))}, "
                                   f"not a {target}")
        keep = [int(detection)]
    return DetectionTarget(found.boxes[keep], found.probs[keep], found.objectness[keep], found.classes[keep],
                           np.asarray(keep, np.int64), scored.image_boxes[keep], found.scores[keep],
                           found.candidate[keep])


def no_detection_message(det, scored: ScoredDetections, target: str | int | None = None) -> str:
    """The one line for an image with nothing to explain."""
    conf = det.conf
    if len(scored) == 0:
        return (f"no detection above --conf {conf:g}: nothing to explain (lower --conf, or explain a box the model "
                "missed with --box x0,y0,x1,y1 --target LABEL)")
    name = det.label(int(target)) if isinstance(target, (int, np.integer)) else target
    return f"no detection of {name!r} among the image's {len(scored)} detection(s): nothing to explain"


def in_file_pixels(results: Sequence[Result], image_size: Sequence[int]) -> None:
    """Set each result's ``image_size`` to the file's ``(H, W)`` and its box to the file's pixels
    (an image read reduced was explained at the reduced size)."""
    for res in results:
        h, w = res.image.shape[:2]
        k = np.array([image_size[1] / w, image_size[0] / h] * 2)
        res.box = tuple(float(v) for v in np.asarray(res.box) * k)
        res.image_size = (int(image_size[0]), int(image_size[1]))


def explain_detections(det, scored: ScoredDetections, call: Call, targets: DetectionTarget, *,
                       seed: int = 0) -> list[Result]:
    """Every detection of ``targets`` explained by one run of ``call`` on ``scored``'s image (one
    query set); the maps at the image's size, each a :class:`Result` with its box."""
    scores = targets.score_candidates(scored.candidates)[0]
    keep = getattr(det, "padding_kept", None)
    hw = scored.image.shape[:2]
    with keep(scored.x, hw) if keep is not None else contextlib.nullcontext():
        expls = call.run_targets(det, scored.x, targets, seed=seed, scores=scores)
    results = []
    for k, ex in enumerate(expls):
        check_finite(ex.saliency, f"the {call.spec.name} map")
        sal = np.clip(map_to_image(det, ex.saliency, hw), 0.0, 1.0).astype(np.float32)
        cls = int(targets.classes[k])
        conf = None if targets.confidences is None else float(targets.confidences[k])
        res = make_result(det, ex, sal, cls, conf if conf is not None else float(scores[k]), cls, ex.score, scored.image)
        res.box = tuple(float(v) for v in targets.image_boxes[k])
        res.detection = int(targets.detections[k]) if targets.detections[k] >= 0 else None
        res.confidence = conf
        results.append(res)
    return results
