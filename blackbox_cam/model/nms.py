"""Thresholds and non-maximum suppression exactly as Ultralytics does them by default.

:func:`non_max_suppression` follows ``ultralytics.utils.nms.non_max_suppression`` (8.x) step by
step, for one image's candidates:

1. score = best class probability x objectness (YOLOv5's ``conf = obj_conf * cls_conf``;
   objectness is 1 for Ultralytics heads), class = its argmax; keep ``score > conf``;
2. at most ``max_nms`` (30000) of them, the highest scores;
3. class-aware greedy NMS by the *offset trick*: each box is shifted by ``class x max_wh``
   (7680 px) so boxes of different classes never overlap, then one class-agnostic greedy
   pass (torchvision's ``nms``: highest score first, drop every later box whose IoU with a
   kept one is ``> iou``) — in float32, as Ultralytics adds the offset in float32;
4. at most ``max_det`` (300) detections, in descending score.

Greedy NMS: Neubeck & Van Gool 2006, "Efficient Non-Maximum Suppression". The greedy loop is
compiled with Numba (one pass over the sorted boxes, IoU against the kept ones of the same
class only: with the offset no other class can overlap, so the decisions, computed on the
offset float32 boxes as Ultralytics computes them, are the same; when the boxes span more than
``max_wh`` the loop compares with every kept box, as torchvision's does).
"""
from __future__ import annotations

import numpy as np
from numba import njit

CONF, IOU, MAX_DET, MAX_NMS, MAX_WH = 0.25, 0.45, 300, 30000, 7680


@njit(cache=True, nogil=True)
def _greedy_by_class(boxes: np.ndarray, classes: np.ndarray, n_classes: int, iou: float,
                     max_keep: int) -> np.ndarray:  # pragma: no cover - compiled
    """Indices kept by greedy NMS over ``boxes`` [n, 4] (float32, already sorted by score),
    comparing each box only with the kept boxes of its own class (``classes`` [n] in
    ``0..n_classes-1``): the same decisions as one pass over all boxes when no two classes'
    (offset) boxes can overlap, at a fraction of the pairs; one class is plain greedy NMS."""
    n = boxes.shape[0]
    keep = np.empty(n, np.int64)
    per = np.empty((n_classes, max_keep), np.int64)
    count = np.zeros(n_classes, np.int64)
    nk = 0
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in range(n):
        c = classes[i]
        x0, y0, x1, y1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        ok = True
        for t in range(count[c]):
            j = per[c, t]
            w = min(x1, boxes[j, 2]) - max(x0, boxes[j, 0])
            h = min(y1, boxes[j, 3]) - max(y0, boxes[j, 1])
            if w <= 0 or h <= 0:
                continue
            inter = np.float32(w * h)
            if inter / (areas[i] + areas[j] - inter) > iou:
                ok = False
                break
        if ok:
            keep[nk] = i
            nk += 1
            per[c, count[c]] = i
            count[c] += 1
            if nk >= max_keep:
                break
    return keep[:nk]


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float = IOU, max_keep: int | None = None,
               classes: np.ndarray | None = None) -> np.ndarray:
    """torchvision's ``nms``: indices of the kept boxes (``x0, y0, x1, y1``), highest score first.

    With ``classes`` (boxes already offset per class so classes cannot overlap), each box is
    compared with its own class's kept boxes only; the decisions are the same."""
    order = np.argsort(-scores, kind="stable")
    b = np.ascontiguousarray(boxes[order], np.float32)
    k = max_keep or len(order)
    cls = (np.zeros(len(order), np.int64) if classes is None
           else np.ascontiguousarray(classes[order], np.int64))
    return order[_greedy_by_class(b, cls, int(cls.max()) + 1 if len(cls) else 1, np.float32(iou), k)]


def non_max_suppression(boxes: np.ndarray, probs: np.ndarray, objectness: np.ndarray, *, conf: float = CONF,
                        iou: float = IOU, max_det: int = MAX_DET, nms: bool = True, max_nms: int = MAX_NMS,
                        max_wh: float = MAX_WH, agnostic: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's detections: ``(candidate indices [K], scores [K], classes [K])``, best first.

    ``boxes`` [A, 4] x0 y0 x1 y1, ``probs`` [A, C], ``objectness`` [A] (see
    :class:`blackbox_cam.model.detections.Candidates`). ``nms=False`` keeps every candidate
    above ``conf`` (set-prediction heads, NMS-inside exports: Ultralytics' end2end path).
    ``agnostic=True`` runs one NMS across classes (Ultralytics' ``agnostic_nms``; what
    ``cv2.dnn.NMSBoxes`` does, e.g. NudeNet).
    """
    if probs.shape[1] == 0 or len(boxes) == 0:
        empty = np.zeros(0, np.int64)
        return empty, np.zeros(0, np.float32), empty
    cls = probs.argmax(axis=1)
    score = (np.take_along_axis(probs, cls[:, None], 1)[:, 0] * objectness).astype(np.float32)
    idx = np.flatnonzero(score > conf)
    if not nms:
        order = idx[np.argsort(-score[idx], kind="stable")][:max_det]
        return order.astype(np.int64), score[order], cls[order].astype(np.int64)
    if len(idx) > max_nms:
        idx = idx[np.argsort(-score[idx], kind="stable")[:max_nms]]
    b = boxes[idx].astype(np.float32)
    shifted = b + (cls[idx].astype(np.float32) * np.float32(0 if agnostic else max_wh))[:, None]
    apart = not agnostic and (len(b) == 0 or float(b.max() - b.min()) < max_wh)  # offset classes cannot overlap
    kept = idx[greedy_nms(shifted, score[idx], iou, max_det, cls[idx] if apart else None)]
    return kept.astype(np.int64), score[kept], cls[kept].astype(np.int64)
