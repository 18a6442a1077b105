"""DE-CAM: saliency by differential evolution over low-resolution masks.

Karatsiolis and Kamilaris (arXiv 2209.08906, VISAPP 2023) search, with differential evolution
(Storn and Price 1997), for the pixels that most influence a classifier's output, using the
outputs alone. Their text beyond the abstract is not available to us, so the algorithm below
is our design (see docs/decam.md for the measurements behind the defaults):

Genome
    A ``g x g`` mask with values in [0, 1] (``g = 8`` by default), upsampled bilinearly to the
    input (:mod:`blackbox_cam.masks`). Smooth masks avoid adversarial high-frequency patterns.
Fitness (minimised)
    ``F(m) = -(p(x . m + b . (1 - m)) - p(x . (1 - m) + b . m)) + lambda * mean(m)``: the target
    probability when only the mask is kept (preservation) minus when it is removed (deletion),
    plus an area penalty (``lambda = 0.3``), so small masks that carry the decision win. ``b``
    is the baseline: zeros in model space (the dataset-mean colour for mean/std-normalised
    models), which measured better than a blurred copy (docs/decam.md). Each candidate costs
    two queries.
Search
    :func:`scipy.optimize.differential_evolution` with ``vectorized=True``: each generation's
    whole population is composed and scored in one batched pass. Population ``S`` and
    generations ``G`` are chosen so that ``2 * S * G <= budget`` (the budget is a hard limit).
    Initial population from a Latin hypercube; ``best1bin``, dithered mutation (0.5, 1),
    recombination 0.7, no polishing (its gradient steps would cost unbudgeted queries).
Map
    Not only the winner: every evaluated mask is a sample of the model's response, so the map
    combines (a) a ridge regression of the target probability on the mask values over all
    ``2 * S * G`` observations (each candidate is seen kept and removed), i.e. each cell's
    average marginal effect, with (b) the fitness-weighted mean of the elite (best 20 %)
    masks, i.e. where the search converged. Both are normalised and averaged, then upsampled.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import differential_evolution
from scipy.stats import qmc

from ..masks import baseline as make_baseline, upsample
from .base import MethodOutput, normalise, register
from .options import Option
from .perturb import BASELINE_OPTION, MaskScorer

DEFAULT_BUDGET = 2000
AGGREGATES = ("combined", "regression", "elite", "best")


def plan(budget: int, population: int | None = None) -> tuple[int, int]:
    """Population size ``S`` and generations ``G`` (initial one included) with ``2 S G <= budget``.

    ``S ~ sqrt(1.6 * budget / 2)`` (between 8 and 80) balances exploration against the number
    of generations; among sizes within 25 % of that, the one that leaves the fewest queries
    unused is taken, so the budget is spent, not only respected.
    """
    evals = budget // 2
    if population is not None:
        pop = max(5, min(int(population), evals))
        return pop, max(1, evals // pop)
    ideal = float(np.clip(math.sqrt(1.6 * evals), 8, 80))
    sizes = range(max(5, math.floor(0.75 * ideal)), max(5, math.ceil(1.25 * ideal)) + 1)
    pop = min((p for p in sizes if p <= evals), key=lambda p: (evals % p, abs(p - ideal)), default=5)
    return pop, max(1, evals // pop)


def ridge_effects(masks: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Per-cell coefficients of ``y ~ b0 + sum_j beta_j m_j`` (ridge, centred), shape of one mask."""
    m = masks.reshape(len(masks), -1).astype(np.float64)
    mc = m - m.mean(axis=0)
    yc = y - y.mean()
    a = mc.T @ mc + alpha * np.eye(m.shape[1])
    return np.linalg.solve(a, mc.T @ yc).reshape(masks.shape[1:])


def elite_mean(masks: np.ndarray, fitness: np.ndarray, share: float = 0.2) -> np.ndarray:
    """Fitness-weighted mean of the best ``share`` of masks (lower fitness is better)."""
    k = max(1, int(round(share * len(masks))))
    order = np.argsort(fitness, kind="stable")[:k]
    f = fitness[order]
    w = (f[-1] - f) + 1e-12 if k > 1 else np.ones(1)
    return np.tensordot(w / w.sum(), masks[order], axes=1)


def aggregate_maps(masks: np.ndarray, keep: np.ndarray, drop: np.ndarray, fitness: np.ndarray,
                   best: np.ndarray) -> dict[str, np.ndarray]:
    """Every way of turning the search's samples into a grid map (see the module docstring)."""
    both = np.concatenate([masks, 1.0 - masks])
    regression = np.maximum(ridge_effects(both, np.concatenate([keep, drop])), 0)
    elite = elite_mean(masks, fitness)
    return {"combined": 0.5 * normalise(regression) + 0.5 * normalise(elite), "regression": regression,
            "elite": elite, "best": best}


#: DE-CAM's options, declared once (CLI flags, checks and help come from here).
OPTIONS = (
    Option("grid", int, 8, "Mask grid size (cells per side).", min=2, max_side=True),
    BASELINE_OPTION,
    Option("area", float, 0.3, "Area penalty lambda: weight of the mask's mean in the fitness.", min=0.0),
    Option("population", int, None, "Population size S (default: chosen from the budget).", min=5),
    Option("aggregate", str, "combined", "How the search's samples become the map.", choices=AGGREGATES),
    Option("trace", bool, False, "Record the map after every generation in extra['trace'].", cli=False),
)


@register("decam", default_budget=DEFAULT_BUDGET, min_budget=11, options=OPTIONS,
          summary="DE-CAM (Karatsiolis & Kamilaris 2022): differential evolution over smooth masks")
def decam(clf, x: np.ndarray, target: int, *, budget: int, seed: int, score: float,
          grid: int, baseline: str, area: float, population: int | None, aggregate: str,
          trace: bool) -> MethodOutput:
    """DE-CAM saliency within ``budget`` queries (default 2000).

    ``trace=True`` records, after every generation, the map as the search has built it so far
    (``extra["trace"]``: dicts with ``generation``, ``queries``, ``best_fitness``, ``saliency`` and
    ``best_mask``, both float32 at the model's input size); the last entry's saliency is the
    returned map. Used by ``blackbox-cam animate -m decam``.
    """
    n_budget = int(budget)
    h, w = x.shape[1:]
    g = int(grid)
    dims = g * g
    pop, gens = plan(n_budget, population)
    cell = (h / g, w / g)
    scorer = MaskScorer(clf, x, make_baseline(x, baseline, seed=seed), target)
    seen_masks: list[np.ndarray] = []
    seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    q0 = clf.queries

    def fitness(genomes: np.ndarray) -> np.ndarray:  # scipy passes (dims, S)
        masks = np.ascontiguousarray(genomes.T.reshape(-1, g, g), dtype=np.float32)
        keep = scorer(masks, cell)
        drop = scorer(masks, cell, invert=True)
        f = -(keep - drop) + area * masks.mean(axis=(1, 2))
        seen_masks.append(masks)
        seen.append((keep, drop, f))
        if trace:
            trace_log.append(_snapshot(len(seen) - 1, clf.queries - q0))
        return f

    trace_log: list[dict] = []

    def _snapshot(gen: int, queries: int) -> dict:
        m = np.concatenate(seen_masks)
        k, d, fi = (np.concatenate(v) for v in zip(*seen))
        b = m[int(np.argmin(fi))]
        gm = aggregate_maps(m, k, d, fi, b)[aggregate]
        return {"generation": gen, "queries": int(queries), "best_fitness": float(np.min(fi)),
                "saliency": normalise(upsample(gm.astype(np.float32), (h, w))),
                "best_mask": upsample(b.astype(np.float32), (h, w))}

    init = qmc.LatinHypercube(d=dims, rng=np.random.default_rng([seed, 7])).random(pop)
    res = differential_evolution(fitness, bounds=[(0.0, 1.0)] * dims, maxiter=gens - 1, init=init,
                                 rng=np.random.default_rng([seed, 11]), polish=False, tol=0.0, atol=0.0,
                                 updating="deferred", vectorized=True, strategy="best1bin",
                                 mutation=(0.5, 1.0), recombination=0.7)
    masks = np.concatenate(seen_masks)
    keep, drop, fit = (np.concatenate(v) for v in zip(*seen))
    best = res.x.reshape(g, g)
    grid_maps = aggregate_maps(masks, keep, drop, fit, best)
    grid_map = grid_maps[aggregate]
    sal = normalise(upsample(grid_map.astype(np.float32), (h, w)))
    history = [float(np.min(f)) for _, _, f in seen]
    return MethodOutput(sal, {"population": pop, "generations": gens},
                        {"best_mask": best.astype(np.float32), "best_fitness": float(res.fun),
                         "fitness_history": np.minimum.accumulate(history).tolist(),
                         "evaluations": int(len(masks)),
                         "grid_maps": grid_maps, **({"trace": trace_log} if trace else {})})
