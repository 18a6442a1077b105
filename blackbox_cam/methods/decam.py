"""DE-CAM: saliency by differential evolution over low-resolution masks.

Karatsiolis and Kamilaris (arXiv 2209.08906, VISAPP 2023) search, with differential evolution
(Storn and Price 1997), for the pixels that most influence a classifier's output, using the
outputs alone. Their text beyond the abstract is not available to us, so the algorithm below
is our design; docs/decam.md has the measurements, on the tune half of the evaluation set of
``bench/evalset.py``, that decided each choice, and the results on the report half.

Genome
    ``g x g`` genes in [0, 1] (``g = 10``); cell ``(i, j)`` of the mask is kept when its gene
    exceeds 0.5, so every evaluated mask is binary, like RISE's, and the initial
    Latin-hypercube population keeps each cell with probability 1/2 (binary masks measured far
    better than grey, partly blended ones: docs/decam.md). The mask is upsampled bilinearly with
    a cell of ``H / (g - 1)`` pixels and a fresh seeded sub-cell shift in ``[0, cell)`` for every
    evaluation, so the search's masks are not tied to one grid (RISE's shifts, Petsiuk et al.
    2018, sec. 3.2).
Fitness (minimised)
    ``F(m) = -(p(x . m + b . (1 - m)) - p(x . (1 - m) + b . m)) + lambda * mean(m)``: the
    target probability with only the mask kept (preservation) minus with it removed
    (deletion), plus an area penalty (``lambda = area``), so small masks that carry the
    decision win. ``b`` is the baseline (zeros in model space: the dataset-mean colour for a
    mean/std-normalised model). A candidate costs two queries, an antithetic pair (the mask
    and its complement), which the map below also uses.
Search
    :func:`scipy.optimize.differential_evolution`, ``vectorized=True``,
    ``updating="deferred"``: each generation is composed by the Numba kernel and scored in
    batched model calls. Population ``S`` and generations ``G`` with ``2 S G <= budget`` (a hard
    limit, also enforced by the runtime). ``best1bin``, dithered mutation ``(mutation, 1)``,
    no polishing (it would spend queries outside the budget), ``tol = 0``.
Map
    Every evaluated mask is an experiment on the model. A ridge regression of the target
    probability on the mask's value at the centres of a fine ``r x r`` grid (``r = 2 g = 20``
    by default: 11 px cells at 224 px), over all ``2 S G`` observations, accumulated in constant memory
    (:class:`~blackbox_cam.methods._evidence.RidgeStats`), estimates each fine cell's effect
    on the score, corrected for where the search chose to sample; negative effects are
    clipped to 0 (as Grad-CAM's ReLU). ``aggregate="combined"`` (default) multiplies it by the
    fitness-weighted mean of the elite masks (the best ``elite`` share: where the search
    converged), so evidence must be causal on average *and* part of what the search found;
    ``regression`` and ``elite`` give either factor alone, ``best`` the single best mask.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import differential_evolution
from scipy.stats import qmc

from ..masks import accumulate, baseline as make_baseline, upsample
from ._evidence import Elite, RidgeStats, grid_values
from .base import MethodOutput, normalise, register
from .options import Option
from .perturb import BASELINE_OPTION, MaskScorer

DEFAULT_BUDGET = 2000
AGGREGATES = ("combined", "regression", "elite", "best")


def plan(budget: int, population: int | None = None, ratio: float = 1.6) -> tuple[int, int]:
    """Population ``S`` and generations ``G`` (initial one included) with ``2 S G <= budget``.

    ``S ~ sqrt(ratio * budget / 2)`` (between 6 and 80) balances exploration against the number
    of generations; among sizes within 25 % of that, the one that leaves the fewest queries
    unused is taken, so the budget is spent, not only respected.
    """
    evals = budget // 2
    if population is not None:
        pop = max(5, min(int(population), evals))
        return pop, max(1, evals // pop)
    ideal = float(np.clip(math.sqrt(ratio * evals), 6, 80))
    sizes = range(max(5, math.floor(0.75 * ideal)), max(5, math.ceil(1.25 * ideal)) + 1)
    pop = min((p for p in sizes if p <= evals), key=lambda p: (evals % p, abs(p - ideal)), default=5)
    return pop, max(1, evals // pop)


def fine_resolution(size: tuple[int, int], grid: int) -> int:
    """The regression grid: twice the genome grid, finer (up to 24) for large inputs (~14 px cells),
    at most 32 per side (1024 features: the statistics stay 8 MB) and never finer than the input."""
    return int(min(max(2 * grid, min(24, round(min(size) / 14))), 32, min(size)))


class _Search:
    """The fitness scipy calls, one generation at a time; keeps what the map is made of.

    Memory is constant in the budget: the regression's sufficient statistics, at most
    ``elite`` masks, the best mask, one number per generation (and, with ``trace``, one map
    per generation).
    """

    def __init__(self, clf, x: np.ndarray, target: int, *, grid: int, baseline: str, area: float, seed: int,
                 resolution: int, alpha: float, elite: int, trace: bool) -> None:
        self.h, self.w = x.shape[1:]
        self.g, self.area, self.alpha, self.r = grid, area, alpha, resolution
        self.cell = (self.h / (grid - 1), self.w / (grid - 1))
        self.scorer = MaskScorer(clf, x, make_baseline(x, baseline, seed=seed), target)
        self.shifts = np.random.default_rng([seed, 3])
        self.stats = RidgeStats(resolution * resolution)
        self.elite = Elite(elite)
        self.best = (math.inf, np.zeros((grid, grid), np.float32), np.zeros(2))
        self.history: list[float] = []
        self.trace: list[dict[str, Any]] | None = [] if trace else None
        self.clf, self.q0 = clf, clf.queries

    def __call__(self, genomes: np.ndarray) -> np.ndarray:  # scipy passes (dims, S)
        masks = (genomes.T.reshape(-1, self.g, self.g) > 0.5).astype(np.float32)
        offsets = np.floor(self.shifts.random((len(masks), 2)) * self.cell)
        keep = self.scorer(masks, self.cell, offsets)
        drop = self.scorer(masks, self.cell, offsets, invert=True)
        fitness = -(keep - drop) + self.area * masks.mean(axis=(1, 2))
        xs = grid_values(masks, self.cell, offsets, (self.h, self.w), self.r)
        self.stats.add(np.concatenate([xs, 1.0 - xs]), np.concatenate([keep, drop]))
        self.elite.add(fitness, masks, offsets)
        i = int(np.argmin(fitness))
        if fitness[i] < self.best[0]:
            self.best = (float(fitness[i]), masks[i].copy(), offsets[i].copy())
        self.history.append(self.best[0])
        if self.trace is not None:
            self.trace.append({"generation": len(self.history) - 1, "queries": int(self.clf.queries - self.q0),
                               "best_fitness": self.best[0], "saliency": normalise(self.maps()["combined"]),
                               "best_mask": self._upsampled(self.best[1], self.best[2])})
        return fitness

    def _upsampled(self, mask: np.ndarray, offset: np.ndarray) -> np.ndarray:
        out = np.zeros((self.h, self.w))
        accumulate(mask[None], np.ones(1), (self.h, self.w), self.cell, offset[None], out=out)
        return out.astype(np.float32)

    def maps(self) -> dict[str, np.ndarray]:
        """Every aggregate at the model's input size (non-negative, not yet normalised)."""
        beta = np.maximum(self.stats.solve(self.alpha), 0.0).reshape(self.r, self.r).astype(np.float32)
        regression = upsample(beta, (self.h, self.w))
        fitness, masks, offsets = self.elite.members()
        elite = np.zeros((self.h, self.w))
        accumulate(masks, Elite.weights(fitness), (self.h, self.w), self.cell, offsets, out=elite)
        return {"combined": normalise(regression) * normalise(elite), "regression": regression,
                "elite": elite.astype(np.float32), "best": self._upsampled(self.best[1], self.best[2])}


#: DE-CAM's options, declared once (CLI flags, checks and help come from here).
OPTIONS = (
    Option("grid", int, 10, "Genome grid size (cells per side).", min=2, max_side=True),
    BASELINE_OPTION,
    Option("area", float, 0.3, "Area penalty lambda: weight of the mask's kept share in the fitness.", min=0.0),
    Option("population", int, None, "Population size S (default: about sqrt(0.8 budget)).", min=5),
    Option("aggregate", str, "combined", "How the search's samples become the map.", choices=AGGREGATES),
    Option("resolution", int, None, "Cells per side of the regression grid (default: ~14 px cells, 16 at 224).",
           min=2, max_side=True),
    Option("alpha", float, 1.0, "Ridge penalty of the regression, relative to a cell's variance.", min=0.0),
    Option("elite", float, 0.2, "Share of the best evaluated masks whose weighted mean enters the map.",
           min=0.0, max=1.0),
    Option("mutation", float, 0.5, "Lower end of DE's dithered mutation factor (the upper end is 1).",
           min=0.0, max=1.0),
    Option("recombination", float, 0.7, "DE's crossover probability.", min=0.0, max=1.0),
    Option("trace", bool, False, "Record the map after every generation in extra['trace'].", cli=False),
)


@register("decam", default_budget=DEFAULT_BUDGET, min_budget=11, options=OPTIONS,
          summary="DE-CAM (Karatsiolis & Kamilaris 2022): differential evolution over binary masks")
def decam(clf, x: np.ndarray, target: int, *, budget: int, seed: int, score: float,
          grid: int, baseline: str, area: float, population: int | None, aggregate: str,
          resolution: int | None, alpha: float, elite: float, mutation: float, recombination: float,
          trace: bool) -> MethodOutput:
    """DE-CAM saliency within ``budget`` queries (default 2000).

    ``trace=True`` records, after every generation, the map as the search has built it so far
    (``extra["trace"]``: dicts with ``generation``, ``queries``, ``best_fitness``, ``saliency`` and
    ``best_mask``, both float32 at the model's input size); the last entry's saliency is the
    returned map (default aggregate). Used by ``blackbox-cam animate -m decam``.
    """
    h, w = x.shape[1:]
    g = int(grid)
    r = int(resolution or fine_resolution((h, w), g))
    pop, gens = plan(int(budget), population)
    search = _Search(clf, x, target, grid=g, baseline=baseline, area=area, seed=seed, resolution=r, alpha=alpha,
                     elite=max(1, round(elite * pop * gens)), trace=trace)
    init = qmc.LatinHypercube(d=g * g, rng=np.random.default_rng([seed, 7])).random(pop)
    res = differential_evolution(search, bounds=[(0.0, 1.0)] * (g * g), maxiter=gens - 1, init=init,
                                 rng=np.random.default_rng([seed, 11]), polish=False, tol=0.0, atol=0.0,
                                 updating="deferred", vectorized=True, strategy="best1bin",
                                 mutation=(mutation, 1.0), recombination=recombination)
    maps = search.maps()
    extra: dict[str, Any] = {
        "best_mask": maps["best"], "best_fitness": float(search.best[0]), "fitness_history": search.history,
        "evaluations": int(pop * gens), "grid_maps": maps, "message": res.message,
        # JSON-ready summary of the search, recorded in explain.json
        "search": {"population": pop, "generations": gens, "evaluations": int(pop * gens),
                   "best_fitness_per_generation": [round(f, 6) for f in search.history],
                   "final_fitness": round(float(search.best[0]), 6)}}
    if trace:
        extra["trace"] = search.trace
    return MethodOutput(normalise(maps[aggregate]), {"resolution": r, "population": pop, "generations": gens},
                        extra)
