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

from .masks import baseline as make_baseline
from .base import MethodOutput, normalise, register
from .options import Option
from .perturb import BASELINE_OPTION, MaskScorer
from .uncertainty import ROUNDS, PixelMoments, Rounds, summarise

DEFAULT_BUDGET = 4000


@register("rise", default_budget=DEFAULT_BUDGET, min_budget=2, anytime=True,
          summary="RISE (Petsiuk et al. 2018): score-weighted sum of random smooth masks",
          options=(Option("grid", int, 7, "Mask grid size (cells per side).", min=2, max_side=True),
                   Option("p", float, 0.5, "Probability that a grid cell is kept.", min=0.01, max=1.0,
                          flag="--keep-probability"),
                   BASELINE_OPTION))
def rise(clf, x: np.ndarray, target: int, *, budget: int, seed: int, score: float,
         grid: int, p: float, baseline: str, auto: Rounds | None = None) -> MethodOutput:
    """RISE saliency from ``budget`` masked queries (default 4000 with the unmasked prediction).

    With ``auto`` (``--budget auto``) the masks come in :data:`~.uncertainty.ROUNDS` equal rounds
    and the run stops after the first round whose two half maps agree (:class:`~.uncertainty.Rounds`);
    the masks are the same stream as a fixed budget's, so stopping at ``N`` gives the map of ``N``.
    """
    n = int(budget)
    h, w = x.shape[1:]
    s = int(grid)
    cell_h, cell_w = math.ceil(h / s), math.ceil(w / s)
    up = ((s + 1) * cell_h / s, (s + 1) * cell_w / s)  # grid cell size after upsampling
    base = make_baseline(x, baseline, seed=seed)
    scorer = MaskScorer(clf, x, base, target, limit=n)
    mask_rng, shift_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    stats = PixelMoments((h, w))
    step = scorer.capacity
    round_size = max(2, -(-n // ROUNDS)) if auto is not None else n
    i = 0
    while i < n:
        k = min(step, n - i, round_size - i % round_size)  # batches never straddle a round
        masks = (mask_rng.random((k, s, s)) < p).astype(np.float32)
        # floats, not integers(): numpy buffers bounded-integer draws per call, which would make
        # the shifts depend on how the masks are chunked into batches
        offsets = np.floor(shift_rng.random((k, 2)) * (cell_h, cell_w))
        stats.add(masks, scorer(masks, up, offsets), up, offsets, start=i)
        i += k
        if auto is not None and i % round_size == 0 and i < n and auto.settled(i + 1, *stats.halves(p)):
            break
    sal = stats.fm / (stats.n * p)
    effect, se = stats.centred(p)
    scale = float(sal.max() - sal.min())
    z = np.divide(effect, se, out=np.zeros_like(se), where=se > 0)
    unc = summarise(normalise(sal), se / scale if scale > 1e-12 else np.zeros_like(se), z, *stats.halves(p),
                    max(stats.hi - score, score - stats.lo), "RISE: standard deviation of f M / p over masks "
                    "/ sqrt(N)")
    return MethodOutput(normalise(sal), {"masks": stats.n} if auto is not None else {},
                        {"raw": sal.astype(np.float32), "uncertainty": unc})
