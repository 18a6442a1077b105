"""PEPPR: Progressive Erasing Plus Progressive Restoration, our protocol for global maps.

Engelmann, Storkey & Bernabeu, "Global explainability in aligned image modalities",
arXiv:2112.09591, validate global maps with PEPPR. The paper's full text is not available to
us; the protocol below is **ours**, consistent with its abstract (docs/global.md):

* a **ranking** orders the pixels (most important first). For a label's global map the order is
  shared by all images of that label; ties are broken by a seeded permutation
  (:func:`blackbox_cam.metrics.salient_order`), so a flat map ranks at random.
* **erasing**: for each fraction ``f`` of a grid over [0, 1] (at least 11 points), the top ``f`` of
  the pixels are replaced by the baseline (model-space zeros, the dataset-mean colour for
  mean/std-normalised models) and the target probability is recorded;
* **restoration**: starting from the fully erased image, the top ``f`` are put back;
* both are repeated with a seeded **random ranking**;
* score = ``[AUC(erase_random) - AUC(erase)] + [AUC(restore) - AUC(restore_random)]``, where the
  curves are means over the label's images and AUC is the trapezoid area over the fractions.
  It is positive when the ranking is faithful (erasing it hurts faster, restoring it helps faster
  than chance), about 0 for a random ranking, at most 2.

Functions here are per image (:func:`curves`) and per group (:class:`PepprAccumulator`, running
sums, so a label with 10,000 images costs no more memory than one with 10).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._common import ProbFn, check_image, salient_rank, score_batches
from .causal import auc

DEFAULT_STEPS = 21
MIN_STEPS = 11


def fractions(steps: int = DEFAULT_STEPS) -> np.ndarray:
    """``steps`` evenly spaced fractions from 0 to 1 (at least :data:`MIN_STEPS`)."""
    if steps < MIN_STEPS:
        raise ValueError(f"PEPPR needs at least {MIN_STEPS} fractions, got {steps}")
    return np.linspace(0.0, 1.0, int(steps))


def ranking(saliency: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pixel ranks ``(H, W)`` (0 = most important) of a map; ties by a ``seed``-ed permutation."""
    return salient_rank(np.asarray(saliency, np.float64), seed)


def random_ranking(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A seeded random ranking of ``size`` pixels (the chance reference)."""
    h, w = size
    return np.random.default_rng([int(seed), 0x9E99]).permutation(h * w).reshape(h, w)


def curves(prob_fn: ProbFn, x: np.ndarray, rank: np.ndarray, target: int, fracs: np.ndarray,
           base: np.ndarray | None = None, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Erasing and restoration curves of one image: target probability at each fraction.

    Parameters
    ----------
    prob_fn : ``(N, C, H, W) -> (N, classes)`` probabilities (e.g. ``Classifier.probabilities``).
    x : the image in model space ``(C, H, W)``.
    rank : ``(H, W)`` pixel ranks from :func:`ranking` or :func:`random_ranking`.
    target : class whose probability is recorded.
    fracs : fractions from :func:`fractions`.
    base : what erased pixels become (default zeros in model space).

    Returns ``(erase, restore)``, each ``len(fracs)`` probabilities; ``2 * len(fracs)`` queries.
    """
    x = check_image(x)
    c, h, w = x.shape
    base = np.zeros_like(x) if base is None else np.asarray(base, np.float32)
    r = np.asarray(rank).ravel()
    if r.size != h * w:
        raise ValueError(f"ranking has {r.size} pixels, the image {h * w}")
    k = np.rint(np.asarray(fracs) * (h * w)).astype(np.int64)
    n = len(k)
    xf, bf = x.reshape(c, -1), base.reshape(c, -1)

    def make(idx: np.ndarray) -> np.ndarray:
        erase = idx < n                       # first n rows: erasing; the next n: restoration
        kk = k[np.where(erase, idx, idx - n)]
        top = r[None, :] < kk[:, None]        # (b, HW): pixel is in the top fraction
        take_base = np.where(erase[:, None], top, ~top)
        return np.where(take_base[:, None, :], bf[None], xf[None]).reshape(idx.size, c, h, w)

    p = score_batches(prob_fn, make, 2 * n, target, batch_size)
    return p[:n], p[n:]


def score(erase: np.ndarray, restore: np.ndarray, erase_random: np.ndarray, restore_random: np.ndarray) -> float:
    """``[AUC(erase_random) - AUC(erase)] + [AUC(restore) - AUC(restore_random)]``."""
    return (auc(erase_random) - auc(erase)) + (auc(restore) - auc(restore_random))


@dataclass
class PepprAccumulator:
    """Running sums of per-image curves for one group (a label, or all images).

    ``add(name, erase, restore)`` for each ranking ``name`` (e.g. ``"global"``, ``"random"``,
    ``"own"``); :meth:`result` gives the mean curves and the scores.
    """

    fracs: np.ndarray
    n: dict[str, int] = field(default_factory=dict)
    sums: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, name: str, erase: np.ndarray, restore: np.ndarray) -> None:
        both = np.stack([np.asarray(erase, np.float64), np.asarray(restore, np.float64)])
        if name in self.sums:
            self.sums[name] += both
            self.n[name] += 1
        else:
            self.sums[name] = both.copy()
            self.n[name] = 1

    def mean(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        m = self.sums[name] / self.n[name]
        return m[0], m[1]

    def result(self, ranking_name: str = "global", random_name: str = "random") -> dict[str, Any]:
        """``{"n_images", "erase", "restore", "erase_random", "restore_random", "peppr"}``; curves as
        ``[[fraction, mean probability], ...]``."""
        e, r = self.mean(ranking_name)
        er, rr = self.mean(random_name)
        out = {"n_images": int(self.n[ranking_name]), "erase": _pairs(self.fracs, e),
               "restore": _pairs(self.fracs, r), "erase_random": _pairs(self.fracs, er),
               "restore_random": _pairs(self.fracs, rr), "peppr": float(score(e, r, er, rr))}
        return out


def _pairs(fracs: np.ndarray, values: np.ndarray) -> list[list[float]]:
    return [[round(float(f), 6), float(v)] for f, v in zip(fracs, values)]
