"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das and Saenko, BMVC 2018).

Saliency is the expected model score under random masks that keep a pixel,
``S(x) = 1 / (N p) * sum_i f(I . M_i) M_i(x)`` (their Eq. 6): ``N`` random ``s x s`` binary
grids with keep-probability ``p``, upsampled bilinearly to ``(s + 1) * ceil(H / s)`` pixels and
cropped at a random shift, so the masks are smooth and not aligned to one grid. Masks are
drawn and scored in batches; the weighted sum is accumulated by a Numba kernel.

The score ``f`` is the target's (:mod:`.targets`): a class probability, or a detection's D-RISE
similarity; with ``T`` targets every mask is scored once and ``T`` maps are accumulated from it.
:func:`sample` is the mask stream and accumulation, shared with D-RISE (:mod:`.drise`).
"""
from __future__ import annotations

import math

import numpy as np

from .masks import baseline as make_baseline
from .base import MethodOutput, normalise, register
from .options import Option
from .perturb import BASELINE_OPTION, MaskScorer
from .targets import ClassTarget, DetectionTarget
from .uncertainty import ROUNDS, PixelMoments, Rounds, summarise

DEFAULT_BUDGET = 4000


def sample(model, x: np.ndarray, target: ClassTarget | DetectionTarget, *, n: int, seed: int, grid: int, p: float,
           baseline: str, auto: Rounds | None = None) -> PixelMoments:
    """Score ``n`` RISE masks (``grid`` cells per side, kept with probability ``p``, random shifts)
    and accumulate every target's moments; masks are drawn, scored and dropped one batch at a time.

    With ``auto`` (``--budget auto``) the masks come in :data:`~.uncertainty.ROUNDS` equal rounds
    and the run stops after the first round at which every target's two half maps agree
    (:class:`~.uncertainty.Rounds`); the masks are the same stream as a fixed budget's, so stopping
    at ``N`` gives the map of ``N``.
    """
    h, w = x.shape[1:]
    s = int(grid)
    cell_h, cell_w = math.ceil(h / s), math.ceil(w / s)
    up = ((s + 1) * cell_h / s, (s + 1) * cell_w / s)  # grid cell size after upsampling
    base = make_baseline(x, baseline, seed=seed)
    scorer = MaskScorer(model, x, base, target, limit=n)
    mask_rng, shift_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    stats = PixelMoments((h, w), target.count)
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
        if auto is not None and i % round_size == 0 and i < n and stats.settled(auto, i + 1, p):
            break
    return stats


def outputs(stats: PixelMoments, sal: np.ndarray, p: float, score: np.ndarray, kind: str, params: dict
            ) -> list[MethodOutput]:
    """One :class:`MethodOutput` per target from the raw maps ``sal`` ``(T, H, W)`` and the moments."""
    effect, se = stats.centred(p)
    half_a, half_b = stats.halves(p)
    outs = []
    for t in range(stats.t):
        scale = float(sal[t].max() - sal[t].min())
        z = np.divide(effect[t], se[t], out=np.zeros_like(se[t]), where=se[t] > 0)
        unc = summarise(normalise(sal[t]), se[t] / scale if scale > 1e-12 else np.zeros_like(se[t]), z,
                        half_a[t], half_b[t], max(stats.hi[t] - score[t], score[t] - stats.lo[t]), kind)
        outs.append(MethodOutput(normalise(sal[t]), dict(params), {"raw": sal[t].astype(np.float32), "uncertainty": unc}))
    return outs


#: RISE's (and D-RISE's) cell keep-probability.
KEEP_OPTION = Option("p", float, 0.5, "Probability that a grid cell is kept.", min=0.01, max=1.0,
                     flag="--keep-probability")


@register("rise", default_budget=DEFAULT_BUDGET, min_budget=2, anytime=True, multi=True,
          kinds=("class", "detection"),
          summary="RISE (Petsiuk et al. 2018): score-weighted sum of random smooth masks",
          options=(Option("grid", int, 7, "Mask grid size (cells per side).", min=2, max_side=True),
                   KEEP_OPTION, BASELINE_OPTION))
def rise(clf, x: np.ndarray, target: ClassTarget | DetectionTarget, *, budget: int, seed: int, score: np.ndarray,
         grid: int, p: float, baseline: str, auto: Rounds | None = None) -> list[MethodOutput]:
    """RISE saliency from ``budget`` masked queries (default 4000 with the unmasked prediction);
    one map per target, all from the same masks."""
    stats = sample(clf, x, target, n=int(budget), seed=seed, grid=grid, p=p, baseline=baseline, auto=auto)
    sal = stats.fm / (stats.n * p)
    return outputs(stats, sal, p, score, "RISE: standard deviation of f M / p over masks / sqrt(N)",
                   {"masks": stats.n} if auto is not None else {})
