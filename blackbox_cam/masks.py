"""Numba kernels that turn low-resolution masks into model input batches.

Every perturbation method here (DE-CAM, RISE, occlusion) does the same thing: take a batch
of small masks ``(B, gh, gw)`` with values in [0, 1], upsample each to the model's input size
and blend ``m * image + (1 - m) * baseline`` into a preallocated ``(B, C, H, W)`` batch. Doing
this in one fused, parallel loop avoids materialising the upsampled masks and allocates
nothing per mask, so the time outside the model stays small and memory stays bounded by one
batch, whatever the query budget.

Geometry: a grid cell covers ``cell_h x cell_w`` pixels (floats, so a grid need not divide
the image), and each mask can be shifted by ``(off_y, off_x)`` pixels (RISE's random shifts).
Pixel ``(y, x)`` samples the grid at ``u = (y + off_y + 0.5) / cell_h - 0.5`` with bilinear
interpolation clamped at the border (``smooth=True``), or takes the cell it falls in
(``smooth=False``, hard occlusion windows).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from scipy import ndimage

BASELINES = ("blur", "mean", "zeros", "noise")


@njit(cache=True, inline="always")
def _coord(p, off, cell, n, smooth):
    if smooth:
        u = (p + off + 0.5) / cell - 0.5
        if u < 0.0:
            u = 0.0
        hi = n - 1.0
        if u > hi:
            u = hi
        i0 = int(math.floor(u))
        i1 = min(i0 + 1, n - 1)
        return i0, i1, u - i0
    i0 = int(math.floor((p + off) / cell))
    if i0 > n - 1:
        i0 = n - 1
    if i0 < 0:
        i0 = 0
    return i0, i0, 0.0


@njit(parallel=True, cache=True)
def _compose(image, baseline, masks, cell_h, cell_w, off_y, off_x, smooth, invert, out):
    nb, gh, gw = masks.shape
    nc, h, w = image.shape
    for b in prange(nb):
        for y in range(h):
            y0, y1, fy = _coord(y, off_y[b], cell_h, gh, smooth)
            for x in range(w):
                x0, x1, fx = _coord(x, off_x[b], cell_w, gw, smooth)
                m = ((1.0 - fy) * ((1.0 - fx) * masks[b, y0, x0] + fx * masks[b, y0, x1])
                     + fy * ((1.0 - fx) * masks[b, y1, x0] + fx * masks[b, y1, x1]))
                if invert:
                    m = 1.0 - m
                for c in range(nc):
                    base = baseline[c, y, x]
                    out[b, c, y, x] = base + m * (image[c, y, x] - base)


@njit(parallel=True, cache=True)
def _accumulate(masks, weights, cell_h, cell_w, off_y, off_x, smooth, out):
    nb, gh, gw = masks.shape
    h, w = out.shape
    for y in prange(h):
        for b in range(nb):
            y0, y1, fy = _coord(y, off_y[b], cell_h, gh, smooth)
            wb = weights[b]
            for x in range(w):
                x0, x1, fx = _coord(x, off_x[b], cell_w, gw, smooth)
                m = ((1.0 - fy) * ((1.0 - fx) * masks[b, y0, x0] + fx * masks[b, y0, x1])
                     + fy * ((1.0 - fx) * masks[b, y1, x0] + fx * masks[b, y1, x1]))
                out[y, x] += wb * m


def _offsets(offsets: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    if offsets is None:
        z = np.zeros(n, np.float64)
        return z, z
    off = np.asarray(offsets, np.float64).reshape(n, 2)
    return np.ascontiguousarray(off[:, 0]), np.ascontiguousarray(off[:, 1])


def compose(image: np.ndarray, baseline: np.ndarray, masks: np.ndarray, cell: tuple[float, float],
            offsets: np.ndarray | None = None, *, smooth: bool = True, invert: bool = False,
            out: np.ndarray | None = None) -> np.ndarray:
    """Blend ``image`` and ``baseline`` (both ``(C, H, W)``) through upsampled ``masks``.

    Returns ``out[b] = M_b * image + (1 - M_b) * baseline`` with ``M_b`` the upsampled mask
    (``1 - M_b`` when ``invert``), shape ``(B, C, H, W)`` float32. Pass ``out`` to reuse a buffer.
    """
    masks = np.ascontiguousarray(masks, dtype=np.float32)
    nb = masks.shape[0]
    if out is None:
        out = np.empty((nb,) + image.shape, np.float32)
    elif out.shape[0] < nb:
        raise ValueError("out buffer smaller than the mask batch")
    oy, ox = _offsets(offsets, nb)
    _compose(np.ascontiguousarray(image, np.float32), np.ascontiguousarray(baseline, np.float32), masks,
             float(cell[0]), float(cell[1]), oy, ox, smooth, invert, out)
    return out[:nb]


def accumulate(masks: np.ndarray, weights: np.ndarray, size: tuple[int, int], cell: tuple[float, float],
               offsets: np.ndarray | None = None, *, smooth: bool = True,
               out: np.ndarray | None = None) -> np.ndarray:
    """``sum_b weights[b] * M_b`` over upsampled masks, shape ``size`` (float64), added into ``out``."""
    masks = np.ascontiguousarray(masks, dtype=np.float32)
    if out is None:
        out = np.zeros(size, np.float64)
    oy, ox = _offsets(offsets, masks.shape[0])
    _accumulate(masks, np.ascontiguousarray(weights, np.float64), float(cell[0]), float(cell[1]),
                oy, ox, smooth, out)
    return out


def upsample(mask: np.ndarray, size: tuple[int, int], cell: tuple[float, float] | None = None,
             *, smooth: bool = True) -> np.ndarray:
    """One ``(gh, gw)`` mask to ``size`` with the same sampling the kernels use."""
    gh, gw = mask.shape
    cell = cell or (size[0] / gh, size[1] / gw)
    return accumulate(mask[None], np.ones(1), size, cell, smooth=smooth).astype(np.float32)


def baseline(x: np.ndarray, kind: str = "blur", *, seed: int = 0, sigma: float | None = None) -> np.ndarray:
    """What a removed pixel becomes, in model space: a blur of the image, its mean colour,
    zeros (the dataset mean for mean/std-normalised models) or seeded noise with the image's
    per-channel mean and spread."""
    if kind == "blur":
        s = sigma if sigma is not None else max(x.shape[1:]) / 20.0
        return ndimage.gaussian_filter(x, sigma=(0, s, s), mode="nearest").astype(np.float32)
    if kind == "mean":
        return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape).astype(np.float32)
    if kind == "zeros":
        return np.zeros_like(x, dtype=np.float32)
    if kind == "noise":
        rng = np.random.default_rng(seed)
        mu = x.mean(axis=(1, 2), keepdims=True)
        sd = x.std(axis=(1, 2), keepdims=True)
        return (mu + sd * rng.standard_normal(x.shape)).astype(np.float32)
    raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
