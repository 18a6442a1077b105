"""Deletion and insertion AUC: the causal metrics of RISE.

Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018, arXiv:1806.07421, section 4.1, and the authors' ``evaluation.py``
(github.com/eclique/RISE).

Pixels are visited from most to least salient. *Deletion* starts from the image and replaces
them, ``step`` at a time, with zeros in normalised model space (the dataset-mean colour);
*insertion* starts from a blurred copy of the image and puts the original pixels back. The curve
is the target's softmax probability after every step, the score its normalised area (trapezoid
rule divided by the number of intervals). Lower deletion and higher insertion are better.

Step size: RISE uses 224 pixels per step at 224x224, i.e. 225 points. For an HxW input we use
``step = W`` pixels per step, so the curve always has ``H + 1`` points (225 at 224x224, exactly
as RISE).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import convolve, gaussian_filter

from ._common import DEFAULT_BATCH, ProbFn, check_image, check_map, salient_rank, score_batches


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve.

    Attributes
    ----------
    auc : normalised area under ``scores`` in [0, 1] (for probabilities).
    scores : target probability after 0, step, 2*step, ... pixels changed (``H + 1`` values).
    fractions : share of pixels changed at each point, from 0 to 1.
    queries : images scored.
    """

    auc: float
    scores: np.ndarray
    fractions: np.ndarray
    queries: int


def gkern(klen: int = 11, nsig: float = 5.0) -> np.ndarray:
    """RISE's blur kernel: ``gaussian_filter`` (sigma ``nsig``) of a ``klen`` x ``klen`` unit impulse."""
    impulse = np.zeros((klen, klen))
    impulse[klen // 2, klen // 2] = 1.0
    return gaussian_filter(impulse, nsig)


def blur(x: np.ndarray, klen: int = 11, nsig: float = 5.0) -> np.ndarray:
    """RISE's insertion substrate: each channel convolved with :func:`gkern`, zero padding.

    Applied in normalised model space, so the zero padding is the dataset-mean colour (as in RISE,
    where the blur is a ``conv2d`` with ``padding=klen // 2`` on the normalised tensor).
    """
    x = check_image(x)
    k = gkern(klen, nsig)
    return np.stack([convolve(c.astype(np.float64), k, mode="constant", cval=0.0) for c in x]).astype(np.float32)


def auc(scores: np.ndarray) -> float:
    """Trapezoid area under ``scores`` on an even grid over [0, 1] (RISE's ``auc``)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size < 2:
        raise ValueError("a curve needs at least two points")
    return float((s.sum() - s[0] / 2 - s[-1] / 2) / (s.size - 1))


def _game(prob_fn: ProbFn, start: np.ndarray, finish: np.ndarray, saliency: np.ndarray, target: int,
          step: int | None, batch_size: int, seed: int) -> Curve:
    c, h, w = start.shape
    s = check_map(saliency, (h, w))
    step = w if step is None else int(step)
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    rank = salient_rank(s, seed).ravel()
    n_steps = -(-h * w // step)
    changed = np.minimum(np.arange(n_steps + 1) * step, h * w)
    start_flat, finish_flat = start.reshape(c, -1), finish.reshape(c, -1)

    def make_batch(idx: np.ndarray) -> np.ndarray:
        take = rank[None, :] < changed[idx, None]                       # (n, HW): pixel already changed
        return np.where(take[:, None, :], finish_flat[None], start_flat[None]).reshape(idx.size, c, h, w)

    scores = score_batches(prob_fn, make_batch, n_steps + 1, target, batch_size)
    return Curve(auc(scores), scores, changed / (h * w), n_steps + 1)


def deletion(prob_fn: ProbFn, x: np.ndarray, saliency: np.ndarray, target: int, *, step: int | None = None,
             batch_size: int = DEFAULT_BATCH, seed: int = 0) -> Curve:
    """Deletion curve and AUC (lower is better).

    Parameters
    ----------
    prob_fn : ``batch (N, C, H, W) -> (N, num_classes)`` softmax probabilities, e.g.
        ``Classifier.probabilities``.
    x : the image in normalised model space, (C, H, W).
    saliency : (H, W) map, high = important. Only the order of its values matters; ties are
        broken by a random permutation drawn from ``seed`` (a constant map scores as a random
        order).
    target : class whose probability is tracked.
    step : pixels changed per step; default ``W`` (``H + 1`` points, RISE's 224 at 224x224).

    References
    ----------
    Petsiuk et al., RISE, BMVC 2018, arXiv:1806.07421, sec. 4.1 ("deletion metric").
    """
    x = check_image(x)
    return _game(prob_fn, x, np.zeros_like(x), saliency, target, step, batch_size, seed)


def insertion(prob_fn: ProbFn, x: np.ndarray, saliency: np.ndarray, target: int, *, step: int | None = None,
              batch_size: int = DEFAULT_BATCH, seed: int = 0) -> Curve:
    """Insertion curve and AUC (higher is better), starting from :func:`blur` of ``x``.

    Parameters as :func:`deletion`.

    References
    ----------
    Petsiuk et al., RISE, BMVC 2018, arXiv:1806.07421, sec. 4.1 ("insertion metric"); the blur
    substrate is ``gkern(11, 5)`` from the authors' ``evaluation.py``.
    """
    x = check_image(x)
    return _game(prob_fn, blur(x), x, saliency, target, step, batch_size, seed)
