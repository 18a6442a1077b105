"""How sure is a map: per-pixel standard errors, a stability score, and budgets that stop early.

Every black-box map here is an estimate from random (or searched) perturbations, so it has a
sampling error that its own statistics already measure; this module turns them into three
things the user sees (issue 21, docs/uncertainty.md):

Standard-error map (``Explanation.se``, ``<stem>_<method>_se.npy``)
    On the map's own [0, 1] scale (the raw estimator's standard error divided by the range the
    min-max normalisation divided by), from each estimator's closed form:

    * DE-CAM: the ridge regression's covariance ``s^2 A^-1 C A^-1`` (``A = C + alpha I``, ``s^2``
      the residual variance over ``n - 1 - tr(A^-1 C)`` degrees of freedom; Hoerl and Kennard
      1970), accumulated from the same sufficient statistics as the fit
      (:class:`~blackbox_cam.methods._evidence.RidgeStats`), per fine cell, upsampled
      bilinearly (an upper bound on the interpolated value's error), times the elite factor of
      the combined map, which is treated as fixed;
    * RISE: the map is a mean over masks of ``z_i(x) = f_i M_i(x) / p`` (Petsiuk et al. 2018,
      Eq. 6), so its error is the standard deviation of ``z`` over masks over ``sqrt(N)``
      (:class:`PixelMoments`, constant memory: five per-pixel sums);
    * occlusion: the map is a mean of the drops of the windows covering each pixel; its error is
      their spread over ``sqrt(count)``. Occlusion is deterministic, so this is how much the
      evidence varies inside a pixel's neighbourhood, not seed noise.

Stability (``Explanation.uncertainty``, explain.json ``uncertainty``)
    The queries are split into two disjoint halves (alternate masks) and a map is built from
    each, block-averaged to at most 32 x 32. ``stability``: their Pearson correlation ``r``
    stepped up to the full run by the Spearman-Brown formula ``2 r / (1 + r)`` (Spearman 1910,
    Brown 1910): the expected correlation of this map with the map of an independent run of
    the same budget. ``split_half_rank``: the halves' Spearman rank correlation (reported, not
    used to stop: on a map whose background is flat, the background's ranks are noise at any
    budget, so it does not rise with the budget; docs/uncertainty.md). ``significant_top20``: the share of the map's top-20 %
    pixels whose effect is more than :data:`Z` standard errors above zero. ``max_z`` and
    ``score_spread`` (the largest change of the target probability any query caused) feed the
    no-information warning (:func:`no_information`).

Anytime budgets (:class:`AutoBudget`, ``--budget auto``)
    A method that runs in rounds (DE-CAM: one generation; RISE: :data:`ROUNDS` equal rounds of
    masks) stops after the first round at which ``stability`` reaches the threshold
    (:data:`DEFAULT_STABILITY`, tuned on the tune split), never past the maximum budget. DE-CAM
    reads the stability of its clipped halves, what its map shows, against a threshold with
    :data:`DECAM_SLACK`, after at least :data:`DECAM_MIN_SHARE` of the budget
    (:meth:`Rounds.settled_shown`, issue 30).
    Deterministic for a seed (the rule reads only the seeded statistics); RISE stopped at ``N``
    queries gives the map of a fixed budget ``N``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BlackboxCamError
from .masks import accumulate

#: Standard errors above zero that make a pixel's effect "significant" (about 97.7 %, one-sided).
Z = 2.0
#: Default split-half rank correlation at which ``--budget auto`` stops (tuned on the tune split:
#: docs/uncertainty.md).
DEFAULT_STABILITY = 0.9
#: DE-CAM under ``--budget auto`` (:meth:`Rounds.settled_shown`): the clipped halves' stability must
#: reach ``1 - (1 - stability) * DECAM_SLACK``, after at least ``DECAM_MIN_SHARE`` of the maximum
#: budget (tuned on the tune split: docs/uncertainty.md, issue 30; 1.5 before the occlusion probe, 2.0 since:
#: the probe's factor damps the halves' disagreement where the map shows nothing).
DECAM_SLACK = 2.0
DECAM_MIN_SHARE = 0.25
#: RISE's rounds under ``--budget auto``: the maximum budget in this many equal parts.
ROUNDS = 16
#: The smallest change of the target probability any query must cause for the map to say anything.
MIN_SPREAD = 0.01
#: The largest z of a map below which no region is distinguishable from noise. About the
#: Bonferroni bound for a few hundred cells at 5 %; tuned so it never fires on the tune split
#: at 500 queries or on the bundled demo images (docs/uncertainty.md).
MIN_MAX_Z = 3.0


@dataclass(frozen=True)
class AutoBudget:
    """``--budget auto``: run in rounds, stop when the map's ``stability >= stability``, at most ``max_budget``
    queries (``None``: the method's default budget)."""

    stability: float = DEFAULT_STABILITY
    max_budget: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.stability, (int, float)) and 0.0 < float(self.stability) < 1.0):
            raise BlackboxCamError(f"--stability must be a correlation in (0, 1), got {self.stability}")
        mb = self.max_budget
        if mb is not None and (isinstance(mb, bool) or not float(mb).is_integer() or mb <= 0):
            raise BlackboxCamError(f"--max-budget must be a positive number of model queries, got {mb}")


def parse_budget(budget: Any) -> tuple[int | None, AutoBudget | None]:
    """``budget`` as given (``None``, an int, ``"auto"`` or an :class:`AutoBudget`) ->
    ``(fixed budget or None, auto rule or None)``."""
    if isinstance(budget, str):
        if budget.strip().lower() != "auto":
            raise BlackboxCamError(f"--budget must be a positive number of model queries or 'auto', got {budget!r}")
        return None, AutoBudget()
    if isinstance(budget, AutoBudget):
        return None, budget
    return budget, None


class Rounds:
    """The stop rule of one anytime run: :meth:`settled` after each round."""

    def __init__(self, rule: AutoBudget, max_budget: int) -> None:
        self.rule, self.max_budget = rule, int(max_budget)
        self.history: list[tuple[int, float]] = []
        self.reason = f"max-budget: {self.max_budget} queries reached before stability {rule.stability:g}"

    def settled(self, queries: int, half_a: np.ndarray, half_b: np.ndarray) -> bool:
        r = reliability(half_a, half_b)
        self.history.append((int(queries), round(r, 4)))
        if r >= self.rule.stability:
            self.reason = f"settled: stability {r:.3f} >= {self.rule.stability:g} after {int(queries)} queries"
            return True
        return False

    def settled_shown(self, queries: int, half_a: np.ndarray, half_b: np.ndarray) -> bool:
        """DE-CAM's rule: the halves agree on what the map shows.

        DE-CAM's map clips negative effects to 0, and its search samples the background less and
        less as it converges, so the halves' unclipped regressions keep disagreeing there long
        after the map has settled (composites tune split: stability 0.9 only at 0.94 of the
        budget). Here the stability is that of the clipped halves, the threshold
        ``1 - (1 - stability) * DECAM_SLACK`` (0.8 at the default 0.9; unreachable as
        ``stability`` nears 1), and the run never stops before :data:`DECAM_MIN_SHARE` of the
        maximum budget (its elite needs generations to concentrate on the evidence). Both
        constants were chosen on the tune split (docs/uncertainty.md, issue 30).
        """
        r = reliability(np.maximum(half_a, 0.0), np.maximum(half_b, 0.0))
        need = 1.0 - (1.0 - self.rule.stability) * DECAM_SLACK
        self.history.append((int(queries), round(r, 4)))
        if r >= need and queries >= DECAM_MIN_SHARE * self.max_budget:
            self.reason = (f"settled: stability of the clipped halves {r:.3f} >= {need:.4g} after {int(queries)} "
                           "queries")
            return True
        return False

    def record(self) -> dict[str, Any]:
        return {"stability": self.rule.stability, "max_budget": self.max_budget, "reason": self.reason,
                "rounds": [list(h) for h in self.history]}


def _blocks(a: np.ndarray, cells: int) -> np.ndarray:
    a = np.asarray(a, np.float64)
    h, w = a.shape
    fy, fx = max(1, h // cells), max(1, w // cells)
    h2, w2 = (h // fy) * fy, (w // fx) * fx
    return a[:h2, :w2].reshape(h2 // fy, fy, w2 // fx, fx).mean(axis=(1, 3))


def reliability(a: np.ndarray, b: np.ndarray, cells: int = 32) -> float:
    """The Spearman-Brown step-up ``2 r / (1 + r)`` of the Pearson correlation ``r`` of two half
    maps, block-averaged to at most ``cells`` per side (0 when either is constant or ``r <= 0``)."""
    x, y = _blocks(a, cells).ravel(), _blocks(b, cells).ravel()
    if np.ptp(x) <= 1e-15 or np.ptp(y) <= 1e-15:
        return 0.0
    r = float(np.corrcoef(x, y)[0, 1])
    return 2 * r / (1 + r) if r > 0 else 0.0


def rank_correlation(a: np.ndarray, b: np.ndarray, cells: int = 32) -> float:
    """Spearman's rank correlation of two maps, block-averaged to at most ``cells`` per side
    (0 when either is constant)."""
    from scipy.stats import rankdata
    x, y = _blocks(a, cells).ravel(), _blocks(b, cells).ravel()
    if np.ptp(x) <= 1e-15 or np.ptp(y) <= 1e-15:
        return 0.0
    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


@dataclass(frozen=True)
class Uncertainty:
    """What a hook returns about its map's uncertainty (``MethodOutput.extra["uncertainty"]``).

    ``se`` is on the returned map's [0, 1] scale, same shape; ``summary`` is JSON-ready.
    """

    se: np.ndarray | None
    summary: dict[str, Any]


def summarise(saliency: np.ndarray, se: np.ndarray | None, z: np.ndarray | None, half_a: np.ndarray,
              half_b: np.ndarray, score_spread: float, kind: str, top: float = 0.2) -> Uncertainty:
    """The :class:`Uncertainty` of a map from its (normalised) ``se``, its per-pixel ``z``
    (effect over standard error) and the two half maps."""
    s = np.asarray(saliency, np.float64)
    summary: dict[str, Any] = {"se": kind, "stability": round(reliability(half_a, half_b), 4),
                               "split_half_rank": round(rank_correlation(half_a, half_b), 4),
                               "score_spread": round(float(score_spread), 6)}
    if z is not None:
        zz = np.nan_to_num(np.asarray(z, np.float64), nan=0.0, posinf=1e6, neginf=-1e6)
        cut = np.quantile(s, 1.0 - top)
        region = s >= cut if np.ptp(s) > 0 else np.zeros(s.shape, bool)
        summary["significant_top20"] = round(float((zz[region] > Z).mean()) if region.any() else 0.0, 4)
        summary["max_z"] = round(float(zz.max()), 3)
    return Uncertainty(None if se is None else np.asarray(se, np.float32), summary)


def no_information(summary: dict[str, Any] | None, method: str, score: float) -> str | None:
    """The one-line warning when no query moved the target beyond noise, else ``None``.

    Two ways a non-constant map can still say nothing: no query changed the target probability
    by :data:`MIN_SPREAD` (a saturated or insensitive class: the map ranks rounding noise), or
    no pixel's effect is :data:`MIN_MAX_Z` standard errors above zero (the map is noise at this
    budget).
    """
    if not summary:
        return None
    spread = summary.get("score_spread")
    if spread is not None and spread < MIN_SPREAD:
        return (f"the {method} map carries no information: no query moved the target score by more than "
                f"{spread:.2g} (p = {score:.4g}: a saturated or insensitive class)")
    mz = summary.get("max_z")
    if mz is not None and mz <= 0:
        return (f"the {method} map carries no information: no region raises the target score (every effect "
                f"is <= 0, largest z = {mz:.2f}; p = {score:.4g}), so the map only ranks what lowers it least")
    if mz is not None and mz < MIN_MAX_Z:
        return (f"the {method} map carries no information: no region's effect is beyond noise (largest "
                f"z = {mz:.2f} < {MIN_MAX_Z:g}); try a larger --budget")
    return None


def confidence(saliency: np.ndarray, se: np.ndarray) -> np.ndarray:
    """How sure the map is of each pixel's value, 0..1: the value over :data:`Z` standard errors
    (1 where it is at least ``Z`` standard errors above zero, the map's floor), for overlays."""
    s, e = np.asarray(saliency, np.float64), np.asarray(se, np.float64)
    c = np.divide(s, Z * e, out=np.ones_like(s), where=e > 0)
    return np.clip(c, 0.0, 1.0).astype(np.float32)


class PixelMoments:
    """Streaming per-pixel moments of ``z_i(x) = f_i M_i(x)`` over masks (RISE's estimator), for
    ``T`` targets scored on the same masks (``scores`` ``[n, T]``; a ``[n]`` vector is one target).

    Per target, five ``H x W`` sums (``f M``, ``f^2 M``, ``f^2 M^2`` and half A's ``f M``), plus the
    targets' shared ``sum M`` (D-RISE's per-pixel normalisation) and a few scalars: memory does
    not grow with the number of masks. Masks with an even draw index form half A. All sums of a
    batch come from two passes of one kernel over the masks, whatever ``T``
    (:func:`~.masks.accumulate` with a weight matrix). With ``targets`` given, arrays are
    ``(T, H, W)`` (``T = 1`` included); without (one target, the original interface) :meth:`halves`
    and :meth:`centred` return ``(H, W)`` maps.
    """

    def __init__(self, size: tuple[int, int], targets: int | None = None) -> None:
        self.size, self.t, self._flat = size, int(targets or 1), targets is None
        t = self.t
        self._linear = np.zeros((3 * t + 1,) + tuple(size))  # the sums linear in M, one kernel pass per batch
        self.fm, self.fm_a, self.f2m = self._linear[:t], self._linear[t:2 * t], self._linear[2 * t:3 * t]
        self.msum = self._linear[3 * t]
        self.f2m2 = np.zeros((t,) + tuple(size))
        self.n = self.n_a = 0
        self.sf, self.sf2, self.sf_a = np.zeros(self.t), np.zeros(self.t), np.zeros(self.t)
        self.lo, self.hi = np.full(self.t, math.inf), np.full(self.t, -math.inf)

    def add(self, masks: np.ndarray, scores: np.ndarray, cell, offsets, start: int) -> None:
        f = np.asarray(scores, np.float64).reshape(len(masks), self.t)
        even = ((start + np.arange(len(f))) % 2 == 0).astype(np.float64)[:, None]
        linear = np.concatenate([f, f * even, f * f, np.ones((len(f), 1))], axis=1)   # (n, 3T + 1)
        accumulate(masks, linear, self.size, cell, offsets, out=self._linear)
        accumulate(masks, f * f, self.size, cell, offsets, square=True, out=self.f2m2)
        self.n += len(f)
        self.n_a += int(even.sum())
        self.sf += f.sum(axis=0)
        self.sf2 += (f * f).sum(axis=0)
        self.sf_a += (f * even).sum(axis=0)
        if len(f):
            self.lo, self.hi = np.minimum(self.lo, f.min(axis=0)), np.maximum(self.hi, f.max(axis=0))

    def halves(self, p: float) -> tuple[np.ndarray, np.ndarray]:
        """The maps of half A and half B (each the RISE mean over its own masks), ``(T, H, W)``."""
        na, nb = max(self.n_a, 1), max(self.n - self.n_a, 1)
        a, b = self.fm_a / (na * p), (self.fm - self.fm_a) / (nb * p)
        return (a[0], b[0]) if self._flat else (a, b)

    def centred(self, p: float) -> tuple[np.ndarray, np.ndarray]:
        """``(effect, se)``: the mean of ``f_i (M_i / p - 1)`` (the RISE map minus the mean score:
        how much keeping a pixel raises the score) and its standard error, ``(T, H, W)``."""
        n = max(self.n, 1)
        sf, sf2 = self.sf[:, None, None], self.sf2[:, None, None]
        mean = (self.fm / p - sf) / n
        second = (self.f2m2 / p ** 2 - 2 * self.f2m / p + sf2) / n
        var = np.maximum(second - mean ** 2, 0.0) * n / max(n - 1, 1)
        return (mean[0], np.sqrt(var / n)[0]) if self._flat else (mean, np.sqrt(var / n))

    def settled(self, auto: Rounds, queries: int, p: float) -> bool:
        """``--budget auto``'s rule over all targets: the least stable target's halves decide."""
        a, b = self.halves(p)
        if self._flat:
            return auto.settled(queries, a, b)
        worst = min(range(self.t), key=lambda k: reliability(a[k], b[k]))
        return auto.settled(queries, a[worst], b[worst])
