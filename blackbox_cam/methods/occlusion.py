"""Sliding-window occlusion (Zeiler and Fergus, ECCV 2014).

A ``window x window`` patch is replaced by the baseline at every ``stride`` pixels; a pixel's
saliency is the mean drop of the target's score (a class probability or a detection's D-RISE
similarity, :mod:`.targets`) over the windows that cover it; with several targets every window
is scored once and one map per target is accumulated. Given a
budget, the stride is the smallest that fits ``budget`` windows, so the budget is honoured.
"""
from __future__ import annotations

import numpy as np

from .masks import baseline as make_baseline
from .base import MethodOutput, normalise, register
from .options import Option
from .perturb import BASELINE_OPTION
from .targets import ClassTarget, DetectionTarget
from .uncertainty import Uncertainty, summarise
from .windows import scan


@register("occlusion", min_budget=2, multi=True, kinds=("class", "detection"),
          summary="Sliding-window occlusion (Zeiler & Fergus 2014): mean score drop per pixel",
          budget_note="no limit (windows at half-window stride)",
          options=(Option("window", int, None, "Window side in pixels (default: 1/8 of the input side).",
                          min=1, max_side=True),
                   BASELINE_OPTION))
def occlusion(clf, x: np.ndarray, target: ClassTarget | DetectionTarget, *, budget: int | None, seed: int,
              score: np.ndarray, window: int | None, baseline: str) -> list[MethodOutput]:
    """Occlusion saliency: one query per window, ``score`` (the unmasked scores, ``[T]``) the reference."""
    h, w = x.shape[1:]
    win = int(window or max(2, round(min(h, w) / 8)))
    nt = target.count
    score = np.asarray(score, np.float64).reshape(nt)
    sums, lo, hi, (stride, ys, xs) = scan(clf, x, make_baseline(x, baseline, seed=seed), target, score, win, budget)
    boxes = [(y, xx) for y in ys for xx in xs]
    drop_sum = sums[:nt]
    drop_sq = sums[nt:2 * nt]     # second moment: the windows' spread at each pixel
    drop_a = sums[2 * nt:3 * nt]  # half A: windows on the even squares of a checkerboard
    count, count_a = sums[3 * nt], sums[3 * nt + 1]
    params = {"window": win, "stride": stride, "windows": len(boxes)}
    outs = []
    for t in range(nt):
        sal = np.divide(drop_sum[t], count, out=np.zeros_like(count), where=count > 0)
        outs.append(MethodOutput(normalise(sal), dict(params), {
            "raw": sal.astype(np.float32),
            "uncertainty": _uncertainty(sal, drop_sq[t], count, drop_sum[t], drop_a[t], count_a,
                                        max(hi[t] - score[t], score[t] - lo[t]))}))
    return outs


def _uncertainty(sal, drop_sq, count, drop_sum, drop_a, count_a, spread) -> Uncertainty:
    """Per-pixel spread of the covering windows' drops over ``sqrt(count)``; halves = checkerboard."""
    n = np.maximum(count, 1.0)
    var = np.maximum(drop_sq / n - sal ** 2, 0.0) * n / np.maximum(n - 1, 1.0)
    se = np.where(count > 1, np.sqrt(var / n), 0.0)
    z = np.divide(sal, se, out=np.zeros_like(se), where=se > 0)
    scale = float(sal.max() - sal.min())
    nb = count - count_a
    half_a = np.divide(drop_a, count_a, out=np.zeros_like(sal), where=count_a > 0)
    half_b = np.divide(drop_sum - drop_a, nb, out=np.zeros_like(sal), where=nb > 0)
    return summarise(normalise(sal), se / scale if scale > 1e-12 else np.zeros_like(se), z, half_a, half_b, spread,
                     "occlusion: spread of the covering windows' drops / sqrt(windows) (deterministic: not "
                     "seed noise)")
