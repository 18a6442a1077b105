"""ROAD: RemOve And Debias, with noisy linear imputation.

Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022, arXiv:2202.00449. The combined score follows the
``ROADCombined`` metric of pytorch-grad-cam (``pytorch_grad_cam/metrics/road.py``).

Removed pixels are not set to a constant (which leaks the mask's shape to the model) but imputed:
each removed pixel equals the weighted mean of its neighbours inside the image (weight 1/6 for
the 4 direct and 1/12 for the 4 diagonal ones: ``(sum_j w_j) x_i = sum_j w_j x_j``). Kept
neighbours go to the right-hand side, removed ones are unknowns; the sparse system is solved
once per image for all channels, and Gaussian noise (sd 0.01 in model space) is added.

For each fraction ``f`` in 10 %, 20 %, ..., 90 %, MoRF removes the ``f`` most salient pixels and
LeRF the ``f`` least salient ones; each records ``p(after) - p(original)`` for the target. MoRF
and LeRF are the means over the fractions, and ``combined = (LeRF - MoRF) / 2`` (higher is better).
pytorch-grad-cam thresholds at ``np.percentile``; we remove exactly ``round(f * H * W)`` pixels by
rank (ties broken at random from ``seed``), which is the same set when the map has no ties and is
defined when it has many (a constant map then removes random pixels in both orders).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve

from ._common import DEFAULT_BATCH, ProbFn, check_image, check_map, salient_rank, score_batches

#: (dy, dx) offsets of the 8 neighbours and their weights (ROAD, sec. 4).
NEIGHBOUR_WEIGHTS: tuple[tuple[int, int, float], ...] = (
    (-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
    (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12),
)

DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class RoadResult:
    """ROAD scores for one map.

    Attributes
    ----------
    combined : ``(lerf - morf) / 2``; higher is better.
    morf, lerf : mean change of the target probability when removing the most / least salient
        pixels (MoRF should drop a lot: very negative is good; LeRF should stay near 0).
    fractions : removal fractions used.
    morf_scores, lerf_scores : target probability after each removal.
    original : target probability on the unperturbed image.
    queries : images scored (``1 + 2 * len(fractions)``).
    """

    combined: float
    morf: float
    lerf: float
    fractions: tuple[float, ...]
    morf_scores: np.ndarray
    lerf_scores: np.ndarray
    original: float
    queries: int


def impute_linear(x: np.ndarray, removed: np.ndarray, *, noise: float = 0.01,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Noisy linear imputation of the ``removed`` pixels of ``x`` (returns a new array).

    Parameters
    ----------
    x : (C, H, W) image in model space.
    removed : (H, W) bool, True where the pixel is to be imputed.
    noise : sd of the Gaussian noise added to the imputed values (0 for none).
    rng : noise source; default a fresh ``default_rng(0)``.

    Every 8-connected group of removed pixels touches a kept pixel unless all pixels are removed;
    then there is nothing to interpolate from and the pixels are set to 0 (the dataset mean)
    plus noise.

    References
    ----------
    Rong et al., ROAD, ICML 2022, arXiv:2202.00449, sec. 4 ("noisy linear imputation").
    """
    x = check_image(x)
    c, h, w = x.shape
    removed = np.asarray(removed, dtype=bool)
    if removed.shape != (h, w):
        raise ValueError(f"removed has shape {removed.shape} but the image is {(h, w)}")
    rng = np.random.default_rng(0) if rng is None else rng
    out = x.astype(np.float64).reshape(c, -1).copy()
    flat = removed.ravel()
    idx = np.flatnonzero(flat)
    n = idx.size
    if n == 0:
        return x.copy()
    if n == flat.size:
        values = np.zeros((n, c))
    else:
        var_of = np.full(flat.size, -1, dtype=np.int64)
        var_of[idx] = np.arange(n)
        yy, xx = np.divmod(idx, w)
        rows, cols, vals = [], [], []
        diag = np.zeros(n)
        rhs = np.zeros((n, c))
        for dy, dx, wt in NEIGHBOUR_WEIGHTS:
            ny, nx = yy + dy, xx + dx
            inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            eq = np.flatnonzero(inside)
            nb = ny[eq] * w + nx[eq]
            diag[eq] += wt
            unknown = flat[nb]
            rows.append(eq[unknown])
            cols.append(var_of[nb[unknown]])
            vals.append(np.full(int(unknown.sum()), wt))
            rhs[eq[~unknown]] -= wt * out[:, nb[~unknown]].T
        rows.append(np.arange(n))
        cols.append(np.arange(n))
        vals.append(-diag)
        a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
        values = np.asarray(spsolve(a, rhs)).reshape(n, c)
    if noise:
        values = values + noise * rng.standard_normal(values.shape)
    out[:, idx] = values.T
    return out.reshape(c, h, w).astype(np.float32)


def road_images(x: np.ndarray, saliency: np.ndarray, *, fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
                noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """The ``2 * len(fractions)`` imputed images ROAD scores, float32 ``(2F, C, H, W)``.

    First the MoRF images (the ``f`` most salient pixels imputed, one per fraction), then the
    LeRF ones. Split from :func:`road` so that callers scoring many maps of one image
    (``blackbox-cam animate``'s ybROAD) can batch the queries of several maps together and
    score the unperturbed image once.
    """
    x = check_image(x)
    c, h, w = x.shape
    s = check_map(saliency, (h, w))
    fr = check_fractions(fractions)
    rank = salient_rank(s, seed)
    hw = h * w
    rng = np.random.default_rng(seed)
    images = []
    for f in fr:                                      # MoRF: remove the k most salient pixels
        images.append(impute_linear(x, rank < round(f * hw), noise=noise, rng=rng))
    for f in fr:                                      # LeRF: remove the k least salient pixels
        images.append(impute_linear(x, rank >= hw - round(f * hw), noise=noise, rng=rng))
    return np.stack(images)


def check_fractions(fractions: tuple[float, ...]) -> tuple[float, ...]:
    """``fractions`` as floats, each in (0, 1); ValueError otherwise."""
    fr = tuple(float(f) for f in fractions)
    if not fr or any(not 0.0 < f < 1.0 for f in fr):
        raise ValueError(f"fractions must be in (0, 1), got {fractions}")
    return fr


def road_result(original: float, scores: np.ndarray, fractions: tuple[float, ...]) -> RoadResult:
    """Combine the target probabilities of :func:`road_images`' images (same order) into a
    :class:`RoadResult`: ``combined = (mean LeRF change - mean MoRF change) / 2``."""
    fr = check_fractions(fractions)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (2 * len(fr),):
        raise ValueError(f"expected {2 * len(fr)} scores (MoRF then LeRF), got shape {scores.shape}")
    morf_s, lerf_s = scores[:len(fr)], scores[len(fr):]
    morf = float(np.mean(morf_s - original))
    lerf = float(np.mean(lerf_s - original))
    return RoadResult((lerf - morf) / 2, morf, lerf, fr, morf_s, lerf_s, float(original), 1 + len(scores))


def road(prob_fn: ProbFn, x: np.ndarray, saliency: np.ndarray, target: int, *,
         fractions: tuple[float, ...] = DEFAULT_FRACTIONS, noise: float = 0.01,
         batch_size: int = DEFAULT_BATCH, seed: int = 0) -> RoadResult:
    """ROAD MoRF, LeRF and combined score of ``saliency`` for ``target``.

    Parameters
    ----------
    prob_fn : ``batch (N, C, H, W) -> (N, num_classes)`` softmax probabilities.
    x : (C, H, W) image in normalised model space.
    saliency : (H, W) map at the model input resolution.
    fractions : shares of pixels removed, each in (0, 1).
    noise : sd of the imputation noise in model space (pytorch-grad-cam: 0.01).
    seed : seeds the tie-breaking order and the imputation noise.

    References
    ----------
    Rong et al., ICML 2022, arXiv:2202.00449; ``ROADCombined`` in pytorch-grad-cam
    (``(lerf - morf) / 2`` over percentiles 10..90).
    """
    x = check_image(x)
    stack = np.concatenate([x[None], road_images(x, saliency, fractions=fractions, noise=noise, seed=seed)])
    scores = score_batches(prob_fn, lambda i: stack[i], len(stack), target, batch_size)
    return road_result(scores[0], scores[1:], fractions)
