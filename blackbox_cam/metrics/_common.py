"""Helpers shared by the metrics: input checks, pixel ordering with ties, batched scoring.

One rule for ties, used by every metric that orders pixels (deletion, insertion, ROAD, top-k IoU):
pixels with equal saliency are ordered by a fixed pseudo-random permutation drawn from ``seed``.
A constant map therefore orders pixels at random, i.e. it scores as the chance baseline, and no
metric ever divides by the map's range.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

#: ``prob_fn(batch (N, 3, H, W) float32 model space) -> (N, num_classes)`` probabilities.
ProbFn = Callable[[np.ndarray], np.ndarray]

DEFAULT_BATCH = 32


def check_map(saliency: np.ndarray, shape: tuple[int, int] | None = None, name: str = "saliency") -> np.ndarray:
    """Return ``saliency`` as a finite float64 (H, W) array; raise ValueError on anything else."""
    s = np.asarray(saliency, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) map, got shape {s.shape}")
    if shape is not None and s.shape != tuple(shape):
        raise ValueError(f"{name} has shape {s.shape} but the image is {tuple(shape)}; "
                         "resize the map to the model input first")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return s


def check_image(x: np.ndarray) -> np.ndarray:
    """Return ``x`` as a float32 (C, H, W) array; raise ValueError otherwise."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"image must be (C, H, W) in model space, got shape {x.shape}")
    return x


def is_constant(saliency: np.ndarray) -> bool:
    s = np.asarray(saliency, dtype=np.float64)
    return bool(s.size == 0 or float(s.max()) - float(s.min()) <= 1e-12 * max(1.0, float(np.abs(s).max())))


def salient_order(saliency: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices from most to least salient; ties broken by a seeded random permutation."""
    s = np.asarray(saliency, dtype=np.float64).ravel()
    tiebreak = np.random.default_rng(seed).permutation(s.size)
    # lexsort sorts by the last key first: descending saliency, then the random key.
    return np.lexsort((tiebreak, -s))


def salient_rank(saliency: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rank of every pixel (0 = most salient) in the order of :func:`salient_order`, shape (H, W)."""
    s = np.asarray(saliency)
    order = salient_order(s, seed)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return rank.reshape(s.shape)


def score_batches(prob_fn: ProbFn, make_batch: Callable[[np.ndarray], np.ndarray], n: int,
                  target: int, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Score ``n`` perturbed images built lazily by ``make_batch(indices)``; target probabilities (n,)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        probs = np.asarray(prob_fn(np.ascontiguousarray(make_batch(idx), dtype=np.float32)))
        if probs.ndim != 2 or probs.shape[0] != idx.size:
            raise ValueError(f"prob_fn returned shape {probs.shape} for a batch of {idx.size} images; "
                             "expected (N, num_classes)")
        if not 0 <= target < probs.shape[1]:
            raise ValueError(f"target {target} is not a class index (model has {probs.shape[1]} classes)")
        out[idx] = probs[:, target]
    return out
