"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das and Saenko, BMVC 2018).

Saliency is the expected model score under random masks that keep a pixel,
``S(x) = 1 / (N p) * sum_i f(I . M_i) M_i(x)`` (their Eq. 6): ``N`` random ``s x s`` binary
grids with keep-probability ``p``, upsampled bilinearly to ``(s + 1) * ceil(H / s)`` pixels and
cropped at a random shift, so the masks are smooth and not aligned to one grid. Masks are
drawn and scored in batches; the weighted sum is accumulated by a Numba kernel.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..masks import accumulate, baseline as make_baseline
from .base import Explanation, normalise, register
from .perturb import MaskScorer, check_budget

DEFAULT_BUDGET = 4000


@register("rise", default_budget=DEFAULT_BUDGET,
          summary="RISE (Petsiuk et al. 2018): score-weighted sum of random smooth masks")
def rise(clf, x: np.ndarray, target: int, *, budget: int | None = None, seed: int = 0,
         grid: int | None = None, p: float = 0.5, baseline: str = "zeros", **_: object) -> Explanation:
    """RISE saliency from ``budget`` masked queries (default 4000)."""
    t0 = time.perf_counter()
    n = DEFAULT_BUDGET if budget is None else int(budget)
    check_budget(n, 1, "rise")
    h, w = x.shape[1:]
    s = int(grid or 7)
    cell_h, cell_w = math.ceil(h / s), math.ceil(w / s)
    up = ((s + 1) * cell_h / s, (s + 1) * cell_w / s)  # grid cell size after upsampling
    base = make_baseline(x, baseline, seed=seed)
    scorer = MaskScorer(clf, x, base, target)
    mask_rng, shift_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    sal = np.zeros((h, w), np.float64)
    step = max(clf.batch_size, 1)
    q0 = clf.queries
    for i in range(0, n, step):
        k = min(step, n - i)
        masks = (mask_rng.random((k, s, s)) < p).astype(np.float32)
        # floats, not integers(): numpy buffers bounded-integer draws per call, which would make
        # the shifts depend on how the masks are chunked into batches
        offsets = np.floor(shift_rng.random((k, 2)) * (cell_h, cell_w))
        scores = scorer(masks, up, offsets)
        accumulate(masks, scores, (h, w), up, offsets, out=sal)
    sal /= n * p
    return Explanation(normalise(sal), target, float("nan"), clf.queries - q0, time.perf_counter() - t0,
                       {"budget": n, "grid": s, "p": p, "baseline": baseline, "seed": seed}, "rise",
                       {"raw": sal.astype(np.float32)})
