"""One image through a detector: its detections in the image's pixels, a result that shows itself.

:func:`detect_image` prepares the image with the detector's pipeline, asks the model once
(:meth:`blackbox_cam.model.detector.Detector.detect`: candidates, thresholds, NMS) and maps the
boxes back to the image (:meth:`~blackbox_cam.model.detector.Detector.to_image_boxes`). The
:class:`ImageDetections` it returns shows itself (boxes and labels drawn) and is the record
``detect`` writes to ``detections.json``; ``verify`` and the per-detection explanations start
from it too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..model.detections import Detections
from ..pictures.boxes import draw_boxes
from ..pictures.display import Shows


@dataclass
class ImageDetections(Shows):
    """One image's detections in its own pixels, with what is needed to draw and record them."""

    boxes: np.ndarray             # float32 [K, 4] x0 y0 x1 y1, the image's pixels
    scores: np.ndarray            # float32 [K]
    classes: np.ndarray           # int64 [K]
    labels: list[str]             # [K] class names
    model_space: Detections       # the same detections in model-input pixels (with probs, candidate indices)
    image: np.ndarray | None = None   # H x W x 3 RGB float 0..255 (as read)
    source: str | None = None
    stem: str | None = None
    image_size: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    def captions(self) -> list[str]:
        return [f"{lab} {s:.2f}" for lab, s in zip(self.labels, self.scores)]

    def lines(self) -> list[str]:
        """One line per detection: ``label score x0 y0 x1 y1`` (image pixels, one decimal)."""
        name = self.source or "image"
        return [f"{name}: {lab} {float(s):.3f} [" + ", ".join(f"{v:.1f}" for v in b) + "]"
                for lab, s, b in zip(self.labels, self.scores, self.boxes)]

    def record(self) -> list[dict[str, Any]]:
        """The ``detections`` list of ``detections.json`` (strict JSON values)."""
        return [{"box": [round(float(v), 3) for v in b], "label": lab, "class": int(c), "score": round(float(s), 6)}
                for b, lab, c, s in zip(self.boxes, self.labels, self.classes, self.scores)]

    def picture(self) -> Image.Image | None:
        if self.image is None:
            return None
        boxes = self.boxes
        if self.image_size is not None and tuple(self.image_size) != tuple(self.image.shape[:2]):
            k = np.array([self.image.shape[1] / self.image_size[1], self.image.shape[0] / self.image_size[0]] * 2)
            boxes = boxes * k
        return draw_boxes(self.image, boxes, self.classes, self.captions())

    def overlay(self) -> Image.Image | None:
        """The boxes drawn on the image (the PNG ``detect --out`` writes)."""
        return self.picture()

    def describe(self) -> str:
        found = ", ".join(self.captions()[:5]) + (" ..." if len(self) > 5 else "")
        return f"{self.source or 'image'}: {len(self)} detection(s){': ' + found if found else ''}"


def detect_image(detector, image: np.ndarray, *, image_size: tuple[int, int] | None = None, conf: float | None = None,
                 iou: float | None = None, max_detections: int | None = None, source: str | None = None,
                 stem: str | None = None) -> ImageDetections:
    """``image`` (H x W x 3 RGB, 0..255) through ``detector``: an :class:`ImageDetections`.

    ``image_size`` is the file's (H, W) when ``image`` was read reduced: boxes are given in the
    file's pixels."""
    x = detector.prepare(np.asarray(image, np.float32))
    det = detector.detect(x[None], conf=conf, iou=iou, max_detections=max_detections)[0]
    hw = tuple(int(v) for v in image.shape[:2])
    boxes = detector.to_image_boxes(det.boxes, hw)
    if image_size is not None and tuple(image_size) != hw:
        k = np.array([image_size[1] / hw[1], image_size[0] / hw[0]] * 2, np.float32)
        boxes = boxes * k
    return ImageDetections(boxes=boxes.astype(np.float32), scores=det.scores.astype(np.float32),
                           classes=det.classes.astype(np.int64),
                           labels=[detector.label(int(c)) for c in det.classes], model_space=det,
                           image=np.asarray(image, np.float32), source=source, stem=stem,
                           image_size=tuple(image_size) if image_size is not None else hw)

