"""Sliding windows over a model input and the target's score drop when each is removed.

The scan behind occlusion (Zeiler and Fergus, ECCV 2014; :mod:`.occlusion`) and behind DE-CAM's
coarse probe (:mod:`.decam`): a ``window x window`` patch replaced by the baseline at every
``stride`` pixels, one query per window, the smallest stride that fits a budget. A module of its
own, with no method registered in it, so either method can use it.
"""
from __future__ import annotations

import numpy as np

from .perturb import MaskScorer
from .targets import ClassTarget, DetectionTarget


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


def covering_window(h: int, w: int, budget: int) -> int:
    """The smallest square window whose scan at half-window stride fits ``budget`` windows, so the
    windows overlap and cover every pixel on any aspect ratio (a window fixed to a share of the
    shorter side would, on a 48 x 192 text line, leave stride-wide gaps no window ever removes).
    A quarter of the side on a square input at 49 windows (56 px at 224)."""
    side = min(h, w)
    for window in range(2, side + 1):
        stride = max(1, window // 2)
        if len(_positions(h, window, stride)) * len(_positions(w, window, stride)) <= budget:
            return window
    return side


def add_windows(sums: np.ndarray, boxes: list[tuple[int, int]], window: int, weights: np.ndarray) -> None:
    """``sums[k] += weights[b, k]`` on the ``window x window`` square at each ``boxes[b] = (y, x)``, boxes
    in order: the weighted sum of the windows' binary masks that :func:`~.masks.accumulate` makes over
    every pixel (the same additions in the same order, so the same bits), touching only the windows'
    pixels (an occlusion at 2000 queries adds 2000 small squares, not 2000 full-size masks)."""
    for (y, x), wb in zip(boxes, np.asarray(weights, np.float64)):
        sums[:, y:y + window, x:x + window] += wb[:, None, None]


def scan(clf, x: np.ndarray, base: np.ndarray, target: ClassTarget | DetectionTarget, score: np.ndarray,
         window: int, budget: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, list[int], list[int]]]:
    """Score ``x`` with each ``window x window`` patch replaced by ``base`` (one query per window,
    within ``budget``), against the unmasked ``score`` ``[T]``.

    Returns ``(sums, lo, hi, (stride, ys, xs))``: ``sums`` ``(3 T + 2, H, W)`` holds, per pixel, the
    covering windows' drops summed, their squares summed, the drops of the windows on a
    checkerboard's even squares summed (the split halves), the number of covering windows and of
    even ones; ``lo``/``hi`` ``[T]`` the lowest and highest score seen."""
    h, w = x.shape[1:]
    win = int(window)
    stride, ys, xs = plan(h, w, win, budget)
    boxes = [(y, xx) for y in ys for xx in xs]
    scorer = MaskScorer(clf, x, base, target, limit=len(boxes))
    nt = target.count
    sums = np.zeros((3 * nt + 2, h, w), np.float64)  # every sum, accumulated in one pass per batch
    parity = np.array([(ys.index(y) + xs.index(xx)) % 2 == 0 for y, xx in boxes], np.float64)
    lo, hi = score.copy(), score.copy()
    step = scorer.capacity
    masks = np.zeros((step, h, w), np.float32)
    for i in range(0, len(boxes), step):
        chunk = boxes[i:i + step]
        masks[:] = 0.0
        for k, (y, xx) in enumerate(chunk):
            masks[k, y:y + win, xx:xx + win] = 1.0
        m = masks[:len(chunk)]
        drops = score[None] - scorer(m, (1.0, 1.0), smooth=False, invert=True)   # (windows, T)
        half = parity[i:i + len(chunk)]
        add_windows(sums, chunk, win, np.concatenate([drops, drops * drops, drops * half[:, None],
                                                      np.ones((len(chunk), 1)), half[:, None]], axis=1))
        lo, hi = np.minimum(lo, score - drops.max(axis=0)), np.maximum(hi, score - drops.min(axis=0))
    return sums, lo, hi, (stride, ys, xs)


def drop_maps(clf, x: np.ndarray, base: np.ndarray, target: ClassTarget | DetectionTarget, score: np.ndarray,
              window: int, budget: int) -> tuple[np.ndarray, dict[str, int]]:
    """Each target's occlusion map, the mean drop of the covering windows (``(T, H, W)`` float64, not
    normalised), and the scan's ``window``, ``stride`` and ``windows`` (= queries spent)."""
    nt = target.count
    sums, _, _, (stride, ys, xs) = scan(clf, x, base, target, np.asarray(score, np.float64).reshape(nt), window,
                                        budget)
    count = sums[3 * nt]
    maps = np.divide(sums[:nt], count[None], out=np.zeros(sums[:nt].shape), where=count[None] > 0)
    return maps, {"window": int(window), "stride": int(stride), "windows": len(ys) * len(xs)}
