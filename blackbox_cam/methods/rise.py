"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das and Saenko, BMVC 2018).

Saliency is the expected model score under random masks that keep a pixel,
``S(x) = 1 / (N p) * sum_i f(I . M_i) M_i(x)`` (their Eq. 6): ``N`` random ``s x s`` binary
grids with keep-probability ``p``, upsampled bilinearly to ``(s + 1) * ceil(H / s)`` pixels and
cropped at a random shift, so the masks are smooth and not aligned to one grid. Masks are
drawn and scored in batches; the weighted sum is accumulated by a Numba kernel.
"""
from __future__ import annotations

import math

import numpy as np

from .masks import accumulate, baseline as make_baseline
from .base import MethodOutput, normalise, register
from .options import Option
from .perturb import BASELINE_OPTION, MaskScorer

DEFAULT_BUDGET = 4000


@register("rise", default_budget=DEFAULT_BUDGET, min_budget=2,
          summary="RISE (Petsiuk et al. 2018): score-weighted sum of random smooth masks",
          options=(Option("grid", int, 7, "Mask grid size (cells per side).", min=2, max_side=True),
                   Option("p", float, 0.5, "Probability that a grid cell is kept.", min=0.01, max=1.0,
                          flag="--keep-probability"),
                   BASELINE_OPTION))
def rise(clf, x: np.ndarray, target: int, *, budget: int, seed: int, score: float,
         grid: int, p: float, baseline: str) -> MethodOutput:
    """RISE saliency from ``budget`` masked queries (default 4000 with the unmasked prediction)."""
    n = int(budget)
    h, w = x.shape[1:]
    s = int(grid)
    cell_h, cell_w = math.ceil(h / s), math.ceil(w / s)
    up = ((s + 1) * cell_h / s, (s + 1) * cell_w / s)  # grid cell size after upsampling
    base = make_baseline(x, baseline, seed=seed)
    scorer = MaskScorer(clf, x, base, target, limit=n)
    mask_rng, shift_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    sal = np.zeros((h, w), np.float64)
    step = scorer.capacity
    for i in range(0, n, step):
        k = min(step, n - i)
        masks = (mask_rng.random((k, s, s)) < p).astype(np.float32)
        # floats, not integers(): numpy buffers bounded-integer draws per call, which would make
        # the shifts depend on how the masks are chunked into batches
        offsets = np.floor(shift_rng.random((k, 2)) * (cell_h, cell_w))
        scores = scorer(masks, up, offsets)
        accumulate(masks, scores, (h, w), up, offsets, out=sal)
    sal /= n * p
    return MethodOutput(normalise(sal), extra={"raw": sal.astype(np.float32)})
