"""Sliding-window occlusion (Zeiler and Fergus, ECCV 2014).

A ``window x window`` patch is replaced by the baseline at every ``stride`` pixels; a pixel's
saliency is the mean drop of the target probability over the windows that cover it. Given a
budget, the stride is the smallest that fits ``budget`` windows, so the budget is honoured.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import BlackboxCamError
from ..masks import accumulate, baseline as make_baseline
from .base import Explanation, normalise, register
from .perturb import MaskScorer, check_budget


def _positions(size: int, window: int, stride: int) -> list[int]:
    last = size - window
    pos = list(range(0, last + 1, stride))
    if pos[-1] != last:
        pos.append(last)  # cover the far border too
    return pos


def plan(h: int, w: int, window: int, budget: int | None) -> tuple[int, list[int], list[int]]:
    """The stride and window positions: stride window/2 by default, else the smallest stride within budget."""
    if budget is None:
        stride = max(1, window // 2)
        return stride, _positions(h, window, stride), _positions(w, window, stride)
    for stride in range(1, max(h, w) + 1):
        ys, xs = _positions(h, window, stride), _positions(w, window, stride)
        if len(ys) * len(xs) <= budget:
            return stride, ys, xs
    return max(h, w), [(h - window) // 2], [(w - window) // 2]  # one central window


@register("occlusion", summary="Sliding-window occlusion (Zeiler & Fergus 2014): mean score drop per pixel")
def occlusion(clf, x: np.ndarray, target: int, *, budget: int | None = None, seed: int = 0,
              window: int | None = None, baseline: str = "zeros", reference_score: float | None = None,
              **_: object) -> Explanation:
    """Occlusion saliency; ``window`` defaults to 1/8 of the image side.

    ``reference_score`` is the target's probability on the unmasked image when the caller
    already has it (:func:`blackbox_cam.explain.explain_image` does); otherwise one query
    computes it.
    """
    t0 = time.perf_counter()
    h, w = x.shape[1:]
    win = int(window or max(2, round(min(h, w) / 8)))
    if not 1 <= win <= min(h, w):
        raise BlackboxCamError(f"--window {win} must be between 1 and the input size {min(h, w)}")
    known = reference_score is not None
    check_budget(budget, 1 if known else 2, "occlusion")
    q0 = clf.queries
    base = make_baseline(x, baseline, seed=seed)
    p0 = float(reference_score) if known else float(clf.probabilities(x[None])[0, target])
    windows = None if budget is None else budget - (0 if known else 1)
    stride, ys, xs = plan(h, w, win, windows)
    boxes = [(y, xx) for y in ys for xx in xs]
    scorer = MaskScorer(clf, x, base, target)
    drop_sum = np.zeros((h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    step = clf.batch_size
    masks = np.zeros((step, h, w), np.float32)
    for i in range(0, len(boxes), step):
        chunk = boxes[i:i + step]
        masks[:] = 0.0
        for k, (y, xx) in enumerate(chunk):
            masks[k, y:y + win, xx:xx + win] = 1.0
        m = masks[:len(chunk)]
        drops = p0 - scorer(m, (1.0, 1.0), smooth=False, invert=True)
        accumulate(m, drops, (h, w), (1.0, 1.0), smooth=False, out=drop_sum)
        accumulate(m, np.ones(len(chunk)), (h, w), (1.0, 1.0), smooth=False, out=count)
    sal = np.divide(drop_sum, count, out=np.zeros_like(drop_sum), where=count > 0)
    return Explanation(normalise(sal), target, p0, clf.queries - q0, time.perf_counter() - t0,
                       {"budget": budget, "window": win, "stride": stride, "windows": len(boxes),
                        "baseline": baseline}, "occlusion", {"raw": sal.astype(np.float32)})
