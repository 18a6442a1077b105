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
    batched model calls (:class:`PairScorer`: the masks kept and removed in one stream of
    near-equal batches; off the CPU the next batch is composed while the model runs the current one).
    Population ``S`` and generations ``G`` with ``2 S G <= budget`` (a hard
    limit, also enforced by the runtime). ``best1bin``, dithered mutation ``(mutation, 1)``,
    no polishing (it would spend queries outside the budget), ``tol = 0``. Optionally
    coarse-to-fine (``refine``): the last share of the generations searches a genome of
    ``2 g - 1`` cells per side, the population carried over by :func:`refine_genomes`; it helps
    evidence of about one coarse cell and costs concentration on larger objects (docs/decam.md,
    table 6), so it is off by default.
Map
    Every evaluated mask is an experiment on the model. A ridge regression of the target
    probability on the mask's value at the centres of a fine ``r x r`` grid (``r = 2 g = 20``
    by default: 11 px cells at 224 px), over all ``2 S G`` observations, accumulated in constant memory
    (:class:`~blackbox_cam.methods._evidence.RidgeStats`), estimates each fine cell's effect
    on the score, corrected for where the search chose to sample; negative effects are
    clipped to 0 (as Grad-CAM's ReLU); its penalty grows when the search has fewer observations than
    cells (:func:`ridge_alpha`, small budgets). ``aggregate="combined"`` (default) multiplies it by the
    fitness-weighted mean of the elite masks (the best ``elite`` share: where the search
    converged), so evidence must be causal on average *and* part of what the search found;
    ``regression`` and ``elite`` give either factor alone, ``best`` the single best mask.
Probe (``probe``, default 49 queries; issue 30, fourth session)
    Before the search, a coarse occlusion (Zeiler and Fergus 2014; :func:`.windows.drop_maps`):
    the smallest windows whose half-window-stride scan fits the probe's queries
    (:func:`.windows.covering_window`: a quarter of the side, 7 x 7 = 49 queries, at 224 px),
    the target's drop when each is removed. It costs queries out of the budget and is used twice:
    the first population keeps each genome cell with probability ``0.25 + 0.5 p`` (``p`` the probe's
    normalised map at the cell, :func:`probe_genomes`; ``probe_init``), so the search starts around
    the evidence instead of uniformly; and the combined map is multiplied by the probe's map
    (smoothed by a Gaussian of half a stride, so the windows' block edges do not print on the map),
    which sinks isolated peaks of a small budget's regression far from any window that mattered.
    Measured on the tune half at 200 queries (75 searches, docs/decam.md table 10): deletion
    0.0267 -> 0.0250, insertion 0.434 -> 0.466, pointing 0.867 -> 0.933, energy 0.555 -> 0.705.
    Skipped when fewer than twice its queries would be left for the search (budgets under 147).
Several targets (:mod:`.targets`: every detection of an image, or several classes)
    One search for all of them within the same budget: each mask is scored once and every
    target read from that model call; the search minimises the *mean* of the targets' fitnesses
    (masks that keep every target's evidence and nothing else), and each target's map is made
    from the same observations by its own regression (one shared ``X^T X``, one response column
    per target, corrected for where the search sampled) times its own elite (the evaluated masks
    best for that target). Measured against one search per detection on the planted-cue
    detector in bench/bench_detection.py (README, "Explaining a detection"). Each batch of
    :class:`PairScorer` reads all ``T`` scores from one model call; ``--budget auto`` stops when
    the least stable target's clipped halves settle (:meth:`_Search.settled`).
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.optimize import differential_evolution
from scipy.stats import qmc

from .masks import accumulate, baseline as make_baseline, compose_pairs, geometry, upsample
from ._evidence import Elite, RidgeStats, grid_values
from .base import MethodOutput, normalise, register
from .options import Option
from .perturb import BASELINE_OPTION, batch_capacity
from .targets import AnyTarget, as_target
from .uncertainty import Rounds, Uncertainty, reliability, summarise
from .windows import covering_window, drop_maps

DEFAULT_BUDGET = 2000
AGGREGATES = ("combined", "regression", "elite", "best")
#: Relative standard error of the combined map's elite factor (how much the search's elite moves
#: between seeds, which the ridge covariance does not see), added in quadrature to the ridge term.
#: Chosen on the tune half for top-20 % coverage (docs/uncertainty.md, issue 30).
ELITE_RELATIVE_SE = 0.12
#: The first population's keep probability at a probe value of 0 and of 1 (docs/decam.md table 10).
PROBE_KEEP = (0.25, 0.75)


def ridge_alpha(alpha: float, observations: int, features: int) -> float:
    """The ridge penalty of a search whose regression sees ``observations`` masks for ``features``
    cells: ``alpha`` when there are at least as many observations as cells, ``alpha * features /
    observations`` when there are fewer (2.8 x at 200 queries: 144 observations, 400 cells).

    The penalty is relative to the features' variance, so a fixed ``alpha`` shrinks every budget's
    coefficients by the same share; with fewer observations than cells the regression is
    underdetermined and its estimates far noisier, and the bias-variance balance moves towards more
    shrinkage. Measured on the tune half (issue 30, fifth session; docs/decam.md table 11): at 200
    queries ``alpha`` 2-3.2 instead of 1 points in 0.947-0.960 of 75 runs instead of 0.933, energy +0.013
    to +0.020, deletion and insertion unchanged; at 500 (450 observations), ``alpha`` 2 costs deletion
    (+0.0011 ± 0.0007), and at 2000 ``alpha`` 4 (+0.0024 ± 0.0017), so budgets whose search sees as many
    observations as cells keep ``alpha``."""
    return float(alpha) * max(1.0, float(features) / max(int(observations), 1))


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


def refined_grid(grid: int) -> int:
    """The finer genome of the coarse-to-fine schedule: ``2 g - 1`` nodes, half the cell."""
    return 2 * int(grid) - 1


def refine_genomes(population: np.ndarray, grid: int) -> np.ndarray:
    """Coarse genomes ``(S, g*g)`` as genomes of :func:`refined_grid` ``(S, g2*g2)``.

    Each fine node takes the bilinear value, where that node lies (cell centres at
    ``(k + 0.5) * cell``, the masks' convention), of the coarse *mask* (genes thresholded at
    0.5), with a tenth of the coarse genes' own value as tie-break: nodes inside a kept or
    removed region stay clearly on their side (>= 0.9 or <= 0.1), nodes on an edge sit near 0.5,
    where the next generations can move the edge by half a coarse cell. So every individual keeps
    the mask it had (97 % of pixels on the same side of 0.5 after upsampling, against 88 % when
    the genes themselves are interpolated).
    """
    g, g2 = int(grid), refined_grid(grid)
    u = np.clip((np.arange(g2) + 0.5) / 2.0 - 0.5, 0.0, g - 1.0)
    i0 = np.floor(u).astype(int)
    i1 = np.minimum(i0 + 1, g - 1)
    w = np.zeros((g2, g))
    w[np.arange(g2), i0] += 1.0 - (u - i0)
    w[np.arange(g2), i1] += u - i0
    pop = np.asarray(population, np.float64).reshape(-1, g, g)
    pop = 0.9 * (pop > 0.5) + 0.1 * pop
    return np.einsum("ai,sij,bj->sab", w, pop, w).reshape(len(pop), g2 * g2)


def schedule(generations: int, refine: float) -> tuple[int, int]:
    """Generations at the coarse and at the refined genome: ``round(refine * G)`` refined ones,
    none when fewer than 2 coarse generations would remain."""
    fine = int(round(refine * generations))
    return (generations, 0) if generations - fine < 2 or fine < 1 else (generations - fine, fine)


def probe_genomes(init: np.ndarray, probe: np.ndarray, grid: int) -> np.ndarray:
    """A first population ``(S, g*g)`` drawn from uniform genes ``init`` so that each cell is kept
    (gene > 0.5) with probability ``lo + (hi - lo) p`` (:data:`PROBE_KEEP`, 0.25 to 0.75), ``p`` the probe's
    map ``[0, 1]`` at the cell's node;
    monotone in each gene, so the Latin-hypercube strata stay strata."""
    h, w = probe.shape
    g = int(grid)
    ys = np.clip(np.round(np.arange(g) * h / (g - 1)), 0, h - 1).astype(int)
    xs = np.clip(np.round(np.arange(g) * w / (g - 1)), 0, w - 1).astype(int)
    lo, hi = PROBE_KEEP
    keep = (lo + (hi - lo) * probe[np.ix_(ys, xs)]).reshape(-1)
    u = np.asarray(init, np.float64)
    return np.where(u < keep, 0.5 + 0.5 * (keep - u) / keep, 0.5 * (1.0 - (u - keep) / (1.0 - keep)))


def _model_off_cpu(model: Any) -> bool:
    """Whether the model's session runs on another device than the CPU (CUDA)."""
    return str(getattr(getattr(model, "session", None), "device", "cpu")).lower() != "cpu"


class PairScorer:
    """Scores each mask kept and removed (DE-CAM's antithetic pair) in one stream of model calls,
    for every target of ``target`` (:mod:`.targets`: classes or detections, ``T`` columns).

    The ``2 n`` images of a generation (the ``n`` masks kept, then the ``n`` removed) are cut into
    ``ceil(2 n / capacity)`` batches of near-equal size (no small tail call: a batch of 2 costs
    ONNX Runtime far more per image than one of 6), and batch ``k + 1`` is composed by a worker
    thread (the Numba kernel releases the GIL) while the model runs batch ``k``, into the other of
    two reused buffers: mask composition hides behind the model call instead of adding to it.
    The scores are those of :class:`~.perturb.MaskScorer` image for image; only the order of the
    work changes. ``pipeline=False`` composes in the calling thread (the reference for
    ``bench/bench_decam.py``).

    By default (``pipeline=None``) the worker thread is used only when the model runs off the
    CPU (CUDA): on a CPU the model's own threads already fill the cores, so composing beside it
    slows the model call by what it saves. Measured on 2 cores (``bench/bench_decam.py
    --compare-pipeline``, issue 30, third session, two runs): queries per second over raw ONNX
    Runtime's 0.92-0.94 without the thread and 0.88-0.93 with it at 300 queries; at 2000 and 10000
    the two overlap within the raw reference's own +-3 % (docs/decam.md, table 9).
    """

    #: Compose the next batch while the model runs: ``None`` = only when the model runs off the CPU
    #: (module default; the bench sets True or False to compare).
    PIPELINE: bool | None = None

    def __init__(self, clf, x: np.ndarray, base: np.ndarray, target: AnyTarget, pipeline: bool | None = None,
                 ) -> None:
        self.clf, self.target = clf, as_target(target)
        self.x, self.base = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(base, np.float32)
        self.capacity = batch_capacity(clf, x.shape)
        choice = self.PIPELINE if pipeline is None else pipeline
        self.pipeline = _model_off_cpu(clf) if choice is None else bool(choice)
        # two buffers only when the next batch is composed while the model reads the current one
        self._bufs = [np.empty((self.capacity,) + x.shape, np.float32) for _ in range(2 if self.pipeline else 1)]
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="decam-compose") if self.pipeline else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _compose(self, masks, tables, start: int, stop: int, buf: np.ndarray) -> np.ndarray:
        """Images ``start:stop`` of the stream (index ``i < n``: mask ``i`` kept; ``i >= n``: mask
        ``i - n`` removed) into ``buf``, in one kernel call."""
        return compose_pairs(self.x, self.base, masks, tables, start, stop, buf)

    def __call__(self, masks: np.ndarray, cell: tuple[float, float], offsets: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``(keep, drop)``, each ``[n, T]``: every target's score (:meth:`~.targets.ClassTarget.scores`,
        :meth:`~.targets.DetectionTarget.scores`, one model call per batch) with each mask kept and
        with it removed."""
        total = 2 * len(masks)
        calls = -(-total // self.capacity)
        edges = [round(total * k / calls) for k in range(calls + 1)]
        out = np.empty((total, self.target.count), np.float64)
        masks = np.ascontiguousarray(masks, np.float32)
        tables = geometry(masks, self.x.shape[1:], cell, offsets)  # once for the generation's 2 n images
        job = lambda k: self._compose(masks, tables, edges[k], edges[k + 1], self._bufs[k % len(self._bufs)])  # noqa: E731
        pending = self._pool.submit(job, 0) if self._pool is not None else None
        for k in range(calls):
            batch = pending.result() if pending is not None else job(k)
            if self._pool is not None and k + 1 < calls:
                pending = self._pool.submit(job, k + 1)
            out[edges[k]:edges[k + 1]] = self.target.scores(self.clf, batch)
        return out[:len(masks)], out[len(masks):]


class _Search:
    """The fitness scipy calls, one generation at a time; keeps what the maps are made of.

    With ``T`` targets (several detections of one image) one search runs: each mask is scored
    once (every target read from the same model call), its fitness for scipy is the **mean** of
    the targets' fitnesses (so the population moves towards masks that keep every target's
    evidence and are small), and each target keeps its own evidence: its ridge regression
    (one shared ``X^T X``, one response column per target), its elite (the masks best for *it*)
    and its best mask. ``T = 1`` is the single-target search unchanged.

    Memory is constant in the budget: the regression's sufficient statistics, at most
    ``elite`` masks per target, the best masks, one number per generation (and, with ``trace``,
    one map per generation).
    """

    def __init__(self, clf, x: np.ndarray, target, *, grid: int, base: np.ndarray, area: float, seed: int,
                 resolution: int, alpha: float, elite: int, trace: bool,
                 probe: list[np.ndarray] | None = None, q0: int | None = None) -> None:
        self.h, self.w = x.shape[1:]
        self.probe = probe  # each target's coarse occlusion map in [0, 1] (the map's third factor), or None
        self.area, self.alpha, self.r = area, alpha, resolution
        self.set_grid(grid)
        target = as_target(target)
        self.t = target.count
        self.scorer = PairScorer(clf, x, base, target)
        self.shifts = np.random.default_rng([seed, 3])
        # two halves of the observations (alternate generations): their maps give the stability
        # score, their sum the map (docs/uncertainty.md)
        many = None if self.t == 1 else self.t
        self.halves = (RidgeStats(resolution * resolution, many), RidgeStats(resolution * resolution, many))
        self.count = 0
        self.lo, self.hi = np.full(self.t, math.inf), np.full(self.t, -math.inf)
        self.elites = [Elite(elite) for _ in range(self.t)]
        self.bests = [(math.inf, np.zeros((grid, grid), np.float32), np.zeros(2), self.cell)] * self.t
        self.best = self.bests[0]  # the search's own best (mean fitness)
        self.history: list[float] = []
        self.trace: list[dict[str, Any]] | None = [] if trace else None
        self.clf, self.q0 = clf, clf.queries if q0 is None else q0  # q0: before the probe, when there is one

    def set_grid(self, grid: int) -> None:
        """Genomes of ``grid x grid`` genes from now on (cell ``H / (grid - 1)``)."""
        self.g = int(grid)
        self.cell = (self.h / (self.g - 1), self.w / (self.g - 1))

    def __call__(self, genomes: np.ndarray) -> np.ndarray:  # scipy passes (dims, S)
        masks = (genomes.T.reshape(-1, self.g, self.g) > 0.5).astype(np.float32)
        offsets = np.floor(self.shifts.random((len(masks), 2)) * self.cell)
        keep, drop = self.scorer(masks, self.cell, offsets)           # (S, T) each
        each = -(keep - drop) + self.area * masks.mean(axis=(1, 2))[:, None]
        fitness = each.mean(axis=1)
        xs = grid_values(masks, self.cell, offsets, (self.h, self.w), self.r)
        # alternate generations: one X^T X product per generation, as without the halves
        self.count += len(masks)
        y = np.concatenate([keep, drop])
        self.halves[len(self.history) % 2].add(np.concatenate([xs, 1.0 - xs]), y[:, 0] if self.t == 1 else y)
        self.lo = np.minimum(self.lo, np.minimum(keep.min(axis=0), drop.min(axis=0)))
        self.hi = np.maximum(self.hi, np.maximum(keep.max(axis=0), drop.max(axis=0)))
        for t in range(self.t):
            self.elites[t].add(each[:, t], masks, offsets, self.cell)
            i = int(np.argmin(each[:, t]))
            if each[i, t] < self.bests[t][0]:
                self.bests[t] = (float(each[i, t]), masks[i].copy(), offsets[i].copy(), self.cell)
        i = int(np.argmin(fitness))
        if fitness[i] < self.best[0]:
            self.best = (float(fitness[i]), masks[i].copy(), offsets[i].copy(), self.cell)
        self.history.append(self.best[0])
        if self.trace is not None:
            self.trace.append({"generation": len(self.history) - 1, "queries": int(self.clf.queries - self.q0),
                               "best_fitness": self.best[0], "saliency": normalise(self.maps()[0]["combined"]),
                               "best_mask": self._upsampled(*self.best[1:])})
        return fitness

    def _upsampled(self, mask: np.ndarray, offset: np.ndarray, cell: tuple[float, float]) -> np.ndarray:
        out = np.zeros((self.h, self.w))
        accumulate(mask[None], np.ones(1), (self.h, self.w), cell, offset[None], out=out)
        return out.astype(np.float32)

    @property
    def stats(self) -> RidgeStats:
        """The regression's statistics over every observation so far."""
        return self.halves[0] + self.halves[1]

    def _grid(self, beta: np.ndarray) -> np.ndarray:
        """Coefficients ``[d]`` or ``[d, T]`` as ``T`` maps on the ``r x r`` grid: ``(T, r, r)``."""
        return np.asarray(beta).reshape(self.r * self.r, -1).T.reshape(-1, self.r, self.r)

    def half_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """The (unclipped) regression of each half, on the ``r x r`` grid, ``(T, r, r)``."""
        return tuple(self._grid(h.solve(self.alpha)) for h in self.halves)

    def settled(self, auto: Rounds) -> bool:
        """``--budget auto``'s rule (:meth:`~.uncertainty.Rounds.settled_shown`: the stability of
        the clipped halves, what the maps show): the least stable target's clipped halves decide."""
        a, b = self.half_maps()
        worst = min(range(self.t), key=lambda k: reliability(np.maximum(a[k], 0.0), np.maximum(b[k], 0.0)))
        return auto.settled_shown(self.clf.queries - self.q0 + 1, a[worst], b[worst])

    def uncertainty(self, maps: list[dict[str, np.ndarray]], aggregate: str, score: np.ndarray,
                    fit: tuple[np.ndarray, np.ndarray] | None = None) -> list[Uncertainty]:
        """Standard error of each map from the ridge covariance; stability from the two halves.
        ``fit``: ``stats.solve_se(alpha)`` when the caller has it already (``[d]`` or ``[d, T]``)."""
        beta, se = fit if fit is not None else self.stats.solve_se(self.alpha)
        size = (self.h, self.w)
        betas, ses = self._grid(beta), self._grid(se)
        half_a, half_b = self.half_maps()
        out = []
        for t, m in enumerate(maps):
            se_pix = upsample(ses[t].astype(np.float32), size)
            effect = upsample(betas[t].astype(np.float32), size)
            z = np.divide(effect, se_pix, out=np.zeros_like(se_pix), where=se_pix > 0)
            scale = float(np.ptp(m["regression"]))
            se_reg = se_pix / scale if scale > 1e-12 else np.zeros_like(se_pix)
            located = normalise(m["elite"]) * (self.probe[t] if self.probe is not None else 1.0)
            se_map = {"regression": se_reg, "combined": np.sqrt((se_reg * located) ** 2
                                                                + (ELITE_RELATIVE_SE * normalise(m["combined"])) ** 2)
                      }.get(aggregate)
            kind = ("DE-CAM: ridge covariance s^2 A^-1 C A^-1 per regression cell, upsampled"
                    + (f", times the elite factor, plus (in quadrature) {ELITE_RELATIVE_SE:g} of the map for the "
                       "elite factor's own seed-to-seed error" if aggregate == "combined" else "")
                    if se_map is not None else f"none (aggregate {aggregate!r} has no closed form)")
            spread = max(self.hi[t] - score[t], score[t] - self.lo[t]) if self.count else 0.0
            out.append(summarise(normalise(m[aggregate]), se_map, z, half_a[t], half_b[t], spread, kind))
        return out

    def maps(self, beta: np.ndarray | None = None) -> list[dict[str, np.ndarray]]:
        """Every aggregate of every target at the model's input size (non-negative, not yet
        normalised); ``beta``: the ridge coefficients (``[d]`` or ``[d, T]``) when the caller has
        them already."""
        beta = self.stats.solve(self.alpha) if beta is None else beta
        betas = self._grid(np.maximum(beta, 0.0)).astype(np.float32)
        out = []
        for t in range(self.t):
            regression = upsample(betas[t], (self.h, self.w))
            elite = np.zeros((self.h, self.w))
            for cell, weights, masks, offsets in self.elites[t].groups():
                accumulate(masks, weights, (self.h, self.w), cell, offsets, out=elite)
            combined = normalise(regression) * normalise(elite)
            if self.probe is not None:
                combined = combined * self.probe[t]
            out.append({"combined": combined, "regression": regression,
                        "elite": elite.astype(np.float32), "best": self._upsampled(*self.bests[t][1:])})
        return out


#: DE-CAM's options, declared once (CLI flags, checks and help come from here).
OPTIONS = (
    Option("grid", int, 10, "Genome grid size (cells per side).", min=2, max_side=True),
    BASELINE_OPTION,
    Option("area", float, 0.3, "Area penalty lambda: weight of the mask's kept share in the fitness.", min=0.0),
    Option("population", int, None, "Population size S (default: about sqrt(0.8 budget)).", min=5),
    Option("aggregate", str, "combined", "How the search's samples become the map.", choices=AGGREGATES),
    Option("resolution", int, None, "Cells per side of the regression grid (default: twice the genome grid, 20 at grid 10; at most "
           "32, which needs budgets of 1000 or more: 1024 features).",
           min=2, max_side=True),
    Option("alpha", float, 1.0, "Ridge penalty of the regression, relative to a cell's variance; a search with fewer "
           "observations than regression cells (under about 500 queries) uses alpha x cells / observations.", min=0.0),
    Option("elite", float, 0.2, "Share of the best evaluated masks whose weighted mean enters the map.",
           min=0.0, max=1.0),
    Option("mutation", float, 0.5, "Lower end of DE's dithered mutation factor (the upper end is 1).",
           min=0.0, max=1.0),
    Option("recombination", float, 0.7, "DE's crossover probability.", min=0.0, max=1.0),
    Option("refine", float, 0.0, "Share of the generations searched at a genome of 2 grid - 1 cells per side "
           "(coarse-to-fine: the population carries over, edges move by half a cell).", min=0.0, max=0.9),
    Option("probe", int, 49, "Queries for a coarse occlusion probe before the search (the smallest windows whose "
           "half-window-stride scan fits them: a quarter of the side on a square input; Zeiler & Fergus 2014): "
           "the map is multiplied by the probe's map; "
           "skipped when fewer than twice as many queries would be left for the search (0: none).", min=0),
    Option("probe_init", bool, True, "Draw the first population's masks keeping each cell with a probability "
           "that follows the probe's map (0.25 to 0.75).", cli=False),
    Option("trace", bool, False, "Record the map after every generation in extra['trace'].", cli=False),
)


@register("decam", default_budget=DEFAULT_BUDGET, min_budget=11, options=OPTIONS, anytime=True, multi=True,
          kinds=("class", "detection"),
          summary="DE-CAM (Karatsiolis & Kamilaris 2022): differential evolution over binary masks")
def decam(clf, x: np.ndarray, target, *, budget: int, seed: int, score: np.ndarray,
          grid: int, baseline: str, area: float, population: int | None, aggregate: str,
          resolution: int | None, alpha: float, elite: float, mutation: float, recombination: float,
          refine: float, probe: int, probe_init: bool, trace: bool, auto: Rounds | None = None
          ) -> list[MethodOutput]:
    """DE-CAM saliency within ``budget`` queries (default 2000), one map per target of ``target``
    (:mod:`.targets`), all from one search (:class:`_Search`: the fitness is the targets' mean).

    ``trace=True`` records, after every generation, the map as the search has built it so far
    (``extra["trace"]``: dicts with ``generation``, ``queries``, ``best_fitness``, ``saliency`` and
    ``best_mask``, both float32 at the model's input size); the last entry's saliency is the
    returned map (default aggregate). Used by ``blackbox-cam animate -m decam``.

    With ``auto`` (``--budget auto``) the population is planned for the maximum budget and the
    search stops after the first generation at which the two halves' clipped regressions agree
    (:meth:`~.uncertainty.Rounds.settled_shown`); the refined phase runs only if the coarse one did
    not stop.
    """
    h, w = x.shape[1:]
    g = int(grid)
    r = int(resolution or fine_resolution((h, w), g))
    targets = as_target(target)
    base = make_baseline(x, baseline, seed=seed)
    q0 = clf.queries
    probe_maps, probe_info = None, None
    if probe and int(budget) - int(probe) >= 2 * int(probe):
        drops, probe_info = drop_maps(clf, x, base, targets, score, covering_window(h, w, int(probe)), int(probe))
        # the covering windows' mean drop is constant on stride-sized blocks: a Gaussian of half a stride
        # removes the block edges the product would otherwise print on the map (seams on the cat's eyes)
        soft = 0.5 * probe_info["stride"]
        probe_maps = [normalise(ndimage.gaussian_filter(d, soft, mode="nearest")) for d in drops]
        budget = int(budget) - probe_info["windows"]
    pop, gens = plan(int(budget), population)
    alpha = ridge_alpha(alpha, 2 * pop * gens, r * r)  # auto: planned for the maximum budget
    search = _Search(clf, x, targets, grid=g, base=base, area=area, seed=seed, resolution=r, alpha=alpha,
                     elite=max(1, round(elite * pop * gens)), trace=trace, probe=probe_maps, q0=q0)
    coarse, fine = schedule(gens, refine)
    common = dict(polish=False, tol=0.0, atol=0.0, updating="deferred", vectorized=True, strategy="best1bin",
                  mutation=(mutation, 1.0), recombination=recombination)
    if auto is not None:
        def settled(intermediate_result) -> bool:  # scipy stops the search when this returns True
            return search.settled(auto)
        common["callback"] = settled
    try:
        init = qmc.LatinHypercube(d=g * g, rng=np.random.default_rng([seed, 7])).random(pop)
        if probe_init and probe_maps is not None:
            init = probe_genomes(init, np.mean(probe_maps, axis=0), g)
        res = differential_evolution(search, bounds=[(0.0, 1.0)] * (g * g), maxiter=coarse - 1, init=init,
                                     rng=np.random.default_rng([seed, 11]), **common)
        done = len(search.history)
        if auto is not None and done < coarse:
            fine = 0
        if fine:
            g2 = refined_grid(g)
            search.set_grid(g2)
            res = differential_evolution(search, bounds=[(0.0, 1.0)] * (g2 * g2), maxiter=fine - 1,
                                         init=refine_genomes(res.population, g),
                                         rng=np.random.default_rng([seed, 13]), **common)
    finally:
        search.scorer.close()
    fit = search.stats.solve_se(alpha)
    maps = search.maps(fit[0])
    gens = len(search.history)
    uncs = search.uncertainty(maps, aggregate, np.asarray(score, np.float64).reshape(search.t), fit)
    outs = []
    for t, m in enumerate(maps):
        best = search.bests[t] if search.t > 1 else search.best
        extra: dict[str, Any] = {
            "best_mask": m["best"], "best_fitness": float(best[0]), "fitness_history": search.history,
            "evaluations": int(pop * gens), "grid_maps": m, "message": res.message,
            "uncertainty": uncs[t],
            # JSON-ready summary of the search, recorded in explain.json
            "search": {"population": pop, "generations": gens, "evaluations": int(pop * gens),
                       "ridge_alpha": round(alpha, 4),
                       "grids": ([g] * coarse + [refined_grid(g)] * fine)[:gens],
                       "best_fitness_per_generation": [round(f, 6) for f in search.history],
                       "final_fitness": round(float(search.best[0]), 6),
                       **({"probe": probe_info} if probe_info is not None else {}),
                       **({"targets": search.t, "target_fitness": round(float(best[0]), 6)} if search.t > 1 else {})}}
        if trace:
            extra["trace"] = search.trace
        outs.append(MethodOutput(normalise(m[aggregate]), {"resolution": r, "population": pop, "generations": gens},
                                 extra))
    return outs
