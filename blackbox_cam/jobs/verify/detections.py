"""``verify`` for detectors: our detections against the vendor's own, box by box.

The vendor's detections come as a CSV with header ``image,label,score,x0,y0,x1,y1`` (boxes in
the image's pixels, ``label`` a class name or index; image paths relative to the CSV's folder
or ``--images``). Per image, each vendor detection (best score first) is matched to the
unmatched detection of ours of the same class with the largest IoU, if that IoU is at least
0.5 (the PASCAL VOC matching rule, Everingham et al. 2010); what is left is *missed* (vendor
only) or *extra* (ours only). A run passes when nothing is missed or extra, every matched box
has IoU >= ``min_iou`` (0.9) and every score is within ``score_gap`` (0.02).

On failure the usual single-step suspects of :func:`blackbox_cam.jobs.verify.job.suspects`
(channel order, scale, resize mode, filter including OpenCV's, pad colour including
Ultralytics' grey 114, pad anchor) are tried and the single change that passes is named.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BlackboxCamError, existing_file
from ...io.images import read_image
from ...model.geometry import CV2_FILTERS
from ..dataset import read_csv_rows
from ...explainer.detections import detect_image
from .job import Suspect, suspects

MATCH_IOU = 0.5
COLUMNS = ("image", "label", "score", "x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class ExpectedBox:
    cls: int
    score: float
    box: tuple[float, float, float, float]


@dataclass
class DetectionReport:
    rows: list[dict[str, Any]]                 # one per matched / missed / extra detection
    matched: int
    missed: int
    extra: int
    max_box_gap: float                         # largest 1 - IoU among matched
    max_score_gap: float
    worst: str
    min_iou: float
    score_gap: float
    suggestion: tuple[str, str] | None = None  # (change, its summary)
    closest: tuple[str, str] | None = None
    tried: list[tuple[str, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (not self.missed and not self.extra and self.max_box_gap <= 1 - self.min_iou
                and self.max_score_gap <= self.score_gap)

    def summary(self) -> str:
        return (f"{self.matched} matched, {self.missed} missed, {self.extra} extra; largest box gap (1 - IoU) "
                f"{self.max_box_gap:.4f}, largest score gap {self.max_score_gap:.4f}")


def read_expected_boxes(path: str | Path, detector, images: str | Path | None = None) -> dict[Path, list[ExpectedBox]]:
    """The vendor's detections by image file (every image of the CSV, even one with no rows left
    after a header-only line, is checked by the caller)."""
    p = existing_file(path, "an --expect CSV")
    base = Path(images) if images is not None else p.parent
    rows = read_csv_rows(p, "--expect", COLUMNS, ",".join(COLUMNS))
    out: dict[Path, list[ExpectedBox]] = defaultdict(list)
    lower = [n.lower() for n in detector.labels] if detector.labels else []
    for line, row in rows:
        where = f"{p}:{line}"
        name = row["label"]
        if name.lstrip("-").isdigit():
            c = int(name)
        elif name.lower() in lower:
            c = lower.index(name.lower())
        else:
            raise BlackboxCamError(f"{where}: label {name!r} is neither a class index nor one of the model's labels")
        if not 0 <= c < detector.num_classes:
            raise BlackboxCamError(f"{where}: class {c} is out of range: the model has {detector.num_classes} classes")
        try:
            vals = [float(row[k]) for k in ("score", "x0", "y0", "x1", "y1")]
        except ValueError:
            raise BlackboxCamError(f"{where}: score and box must be numbers, got {[row[k] for k in COLUMNS[2:]]}") from None
        img = Path(row["image"])
        out[img if img.is_absolute() else base / img].append(ExpectedBox(c, vals[0], tuple(vals[1:])))
    if not out:
        raise BlackboxCamError(f"{p}: no detections listed (header {','.join(COLUMNS)})")
    return dict(out)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [n, 4] with every box of ``b`` [m, 4] (x0, y0, x1, y1)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match(expected: list[ExpectedBox], boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
          image: str, label) -> list[dict[str, Any]]:
    """Rows for one image: matched pairs, then missed, then extra (see the module docstring)."""
    order = sorted(range(len(expected)), key=lambda i: -expected[i].score)
    ious = iou_matrix(np.array([e.box for e in expected]), boxes) if len(expected) and len(boxes) else None
    used: set[int] = set()
    rows = []
    for i in order:
        e = expected[i]
        best, best_iou = None, MATCH_IOU
        for j in range(len(boxes)):
            if j not in used and int(classes[j]) == e.cls and ious is not None and ious[i, j] >= best_iou:
                best, best_iou = j, float(ious[i, j])
        row = {"image": image, "label": label(e.cls), "expected_score": e.score, "expected_box": list(e.box)}
        if best is None:
            rows.append({**row, "status": "missed", "score": None, "box": None, "iou": None})
            continue
        used.add(best)
        rows.append({**row, "status": "matched", "score": float(scores[best]),
                     "box": [float(v) for v in boxes[best]], "iou": best_iou})
    for j in range(len(boxes)):
        if j not in used:
            rows.append({"image": image, "label": label(int(classes[j])), "expected_score": None, "expected_box": None,
                         "status": "extra", "score": float(scores[j]), "box": [float(v) for v in boxes[j]], "iou": None})
    return rows


def _run(detector, expected: dict[Path, list[ExpectedBox]], images: dict[Path, np.ndarray],
         sizes: dict[Path, tuple[int, int]]) -> list[dict[str, Any]]:
    rows = []
    for path, exp in expected.items():
        res = detect_image(detector, images[path], image_size=sizes[path], source=str(path))
        rows += match(exp, res.boxes, res.scores, res.classes, str(path), detector.label)
    return rows


def _report(rows: list[dict[str, Any]], min_iou: float, score_gap: float) -> DetectionReport:
    matched = [r for r in rows if r["status"] == "matched"]
    box_gaps = [1 - r["iou"] for r in matched]
    score_gaps = [abs(r["score"] - r["expected_score"]) for r in matched]
    worst = max(matched, key=lambda r: 1 - r["iou"], default=None)
    return DetectionReport(rows, len(matched), sum(r["status"] == "missed" for r in rows),
                           sum(r["status"] == "extra" for r in rows), max(box_gaps, default=0.0),
                           max(score_gaps, default=0.0),
                           f"{worst['image']} {worst['label']}" if worst else "-", min_iou, score_gap)


def detector_suspects(detector) -> list[Suspect]:
    """:func:`~blackbox_cam.jobs.verify.job.suspects` plus the steps detector vendors differ in:
    OpenCV's filters, Ultralytics' grey 114 padding and the pad anchor (centre or top-left)."""
    geo, pp = detector.geometry, detector.preprocessing
    out = suspects(pp, geo, detector.pipeline.vocabulary, tuple(detector.input_size))
    for f in CV2_FILTERS:
        if f != geo.resample:
            out.append(Suspect(f'"resample": "{f}" (OpenCV\'s cv2.resize)', pp, replace(geo, resample=f)))
    if geo.pad_color != (114.0, 114.0, 114.0):
        out.append(Suspect('"pad_color": [114, 114, 114] (Ultralytics\' grey)', pp, replace(geo, pad_color=(114.0,) * 3)))
    anchor = "top-left" if geo.centre != "topleft" else "center"
    out.append(Suspect(f'"pad_anchor": "{anchor}"', pp, replace(geo, centre="topleft" if anchor == "top-left" else "torchvision")))
    return out


def verify_detections(detector, expected: dict[Path, list[ExpectedBox]], *, min_iou: float = 0.9,
                      score_gap: float = 0.02, try_suspects: bool = True) -> DetectionReport:
    """Detect in every expected image with ``detector`` as configured and match (module docstring)."""
    images, sizes = {}, {}
    for p in expected:
        images[p], sizes[p] = read_image(p)
    rep = _report(_run(detector, expected, images, sizes), min_iou, score_gap)
    if rep.passed or not try_suspects:
        return rep
    old = detector.preprocessing, detector.geometry
    best_key = None
    try:
        for s in detector_suspects(detector):
            detector.preprocessing, detector.geometry = s.preprocessing, s.geometry
            try:
                r = _report(_run(detector, expected, images, sizes), min_iou, score_gap)
            except BlackboxCamError:
                continue
            rep.tried.append((s.change, r.summary()))
            key = (r.missed + r.extra, r.max_box_gap, r.max_score_gap)
            if r.passed and rep.suggestion is None:
                rep.suggestion = (s.change, r.summary())
            if best_key is None or key < best_key:
                best_key, best = key, (s.change, r.summary())
    finally:
        detector.preprocessing, detector.geometry = old
    if rep.suggestion is None and best_key is not None and best_key < (rep.missed + rep.extra, rep.max_box_gap,
                                                                        rep.max_score_gap):
        rep.closest = best
    return rep
