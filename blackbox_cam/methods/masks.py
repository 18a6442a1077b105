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

import os

# Numba's parallel kernels run on GNU OpenMP, whose idle threads spin for a while after each
# parallel region, on the very cores ONNX Runtime needs next: with spinning, DE-CAM reached
# 0.78 of raw ORT throughput, with passive waiting 0.96 (bench/bench_decam.py, 2 cores).
# Must be set before libgomp loads (at Numba's first parallel launch); a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402
from scipy import ndimage  # noqa: E402

BASELINES = ("blur", "mean", "zeros", "noise")


def axis_weights(positions: np.ndarray, offsets: np.ndarray, cell: float, n_grid: int, smooth: bool = True):
    """Where pixel ``positions`` (along one axis) fall in each shifted low-resolution grid.

    For every mask ``b`` (shifted by ``offsets[b]`` pixels) and position ``x``: the two grid
    indices ``(i0, i1)`` and the weight ``f`` of ``i1``, so the mask's value there is
    ``m[i0] + f * (m[i1] - m[i0])`` (bilinear, cell centres at ``(k + 0.5) * cell - offset``),
    or ``m[i0]`` with ``f = 0`` when not ``smooth``. Float64, shape ``(B, len(positions))``.
    The one definition of the upsampling convention: the Numba kernels use it at integer
    pixels, DE-CAM's regression (:func:`blackbox_cam.methods._evidence.grid_values`) at the
    centres of its fine grid.
    """
    p = np.asarray(positions, np.float64)[None, :] + offsets[:, None]
    if smooth:
        u = np.clip((p + 0.5) / cell - 0.5, 0.0, n_grid - 1.0)
        i0 = np.floor(u).astype(np.intp)
        return i0, np.minimum(i0 + 1, n_grid - 1), u - i0
    i0 = np.clip(np.floor(p / cell), 0, n_grid - 1).astype(np.intp)
    return i0, i0, np.zeros(i0.shape)


def _tables(n_pix: int, offsets: np.ndarray, cell: float, n_grid: int, smooth: bool):
    """:func:`axis_weights` at every pixel, in the kernels' dtypes (int32 indices, float32 weights).

    Vectorised numpy over ``(B, n_pix)``; computing this once per batch instead of per pixel
    lets the kernel do only gathers and multiply-adds.
    """
    i0, i1, f = axis_weights(np.arange(n_pix, dtype=np.float64), offsets, cell, n_grid, smooth)
    return i0.astype(np.int32), i1.astype(np.int32), f.astype(np.float32)


@njit(parallel=True, cache=True, nogil=True)
def _compose(image, baseline, masks, y0, y1, fy, x0, x1, fx, start, stop, split, invert, out):
    """Images ``start:stop`` of a stream over ``masks``: index ``i < split`` is mask ``i``, index
    ``i >= split`` mask ``i - split`` inverted (``invert`` flips both). One parallel loop over every
    output row of the batch (not over its images: a batch of 3 on 2 cores would leave one idle)."""
    nc, h, w = image.shape
    for r in prange((stop - start) * h):
        k = r // h
        y = r - k * h
        i = start + k
        b = i if i < split else i - split
        flip = (i >= split) != invert
        a, c_, t = y0[b, y], y1[b, y], fy[b, y]
        row = np.empty(w, np.float32)
        for x in range(w):
            i0, j, s = x0[b, x], x1[b, x], fx[b, x]
            top = masks[b, a, i0] + s * (masks[b, a, j] - masks[b, a, i0])
            bot = masks[b, c_, i0] + s * (masks[b, c_, j] - masks[b, c_, i0])
            m = top + t * (bot - top)
            row[x] = 1.0 - m if flip else m
        for c in range(nc):
            for x in range(w):
                base = baseline[c, y, x]
                out[k, c, y, x] = base + row[x] * (image[c, y, x] - base)


@njit(parallel=True, cache=True)
def _accumulate_many(masks, weights, y0, y1, fy, x0, x1, fx, square, out):
    """``out[k] += sum_b weights[b, k] * M_b`` (or ``M_b ** 2``) for ``K`` weight vectors at once:
    ``weights (B, K)``, ``out (K, H, W)``. Per output row, the upsampled masks' values are computed
    once into a row buffer, then each of the ``K`` sums runs along contiguous memory, masks in
    order (one weight vector, ``K = 1``, is the plain weighted sum)."""
    nb = masks.shape[0]
    nk, h, w = out.shape
    for y in prange(h):
        row = np.empty((nb, w), np.float32)
        for b in range(nb):
            a, c_, t = y0[b, y], y1[b, y], fy[b, y]
            for x in range(w):
                i, j, s = x0[b, x], x1[b, x], fx[b, x]
                top = masks[b, a, i] + s * (masks[b, a, j] - masks[b, a, i])
                bot = masks[b, c_, i] + s * (masks[b, c_, j] - masks[b, c_, i])
                m = top + t * (bot - top)
                row[b, x] = m * m if square else m
        for k in range(nk):
            for b in range(nb):
                wb = weights[b, k]
                for x in range(w):
                    out[k, y, x] += wb * row[b, x]


def _offsets(offsets: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    if offsets is None:
        z = np.zeros(n, np.float64)
        return z, z
    off = np.asarray(offsets, np.float64).reshape(n, 2)
    return off[:, 0], off[:, 1]


def geometry(masks: np.ndarray, size: tuple[int, int], cell: tuple[float, float],
             offsets: np.ndarray | None = None, smooth: bool = True) -> tuple[np.ndarray, ...]:
    """The kernels' sampling tables for ``masks`` ``(B, gh, gw)`` at ``size``: ``(y0, y1, fy, x0, x1, fx)``
    (:func:`axis_weights` at every pixel row and column). Computed once, they serve every batch cut
    from the same masks (:func:`compose_pairs`)."""
    nb, gh, gw = masks.shape
    oy, ox = _offsets(offsets, nb)
    return (*_tables(size[0], oy, float(cell[0]), gh, smooth), *_tables(size[1], ox, float(cell[1]), gw, smooth))


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
    _compose(np.ascontiguousarray(image, np.float32), np.ascontiguousarray(baseline, np.float32), masks,
             *geometry(masks, image.shape[1:], cell, offsets, smooth), 0, nb, nb, invert, out)
    return out[:nb]


def compose_pairs(image: np.ndarray, baseline: np.ndarray, masks: np.ndarray, tables: tuple[np.ndarray, ...],
                  start: int, stop: int, out: np.ndarray) -> np.ndarray:
    """Images ``start:stop`` of the antithetic stream of ``n`` masks (index ``i < n``: mask ``i`` kept,
    ``i >= n``: mask ``i - n`` removed) into ``out``, in one kernel call; ``tables`` is
    :func:`geometry` of all ``n`` masks (one table per generation, not per batch). Equal image for
    image to :func:`compose` with and without ``invert``."""
    n = masks.shape[0]
    if not 0 <= start <= stop <= 2 * n or out.shape[0] < stop - start:
        raise ValueError("stream slice outside the masks or larger than the out buffer")
    _compose(image, baseline, masks, *tables, start, stop, n, False, out)
    return out[:stop - start]


def accumulate(masks: np.ndarray, weights: np.ndarray, size: tuple[int, int], cell: tuple[float, float],
               offsets: np.ndarray | None = None, *, smooth: bool = True, square: bool = False,
               out: np.ndarray | None = None) -> np.ndarray:
    """``sum_b weights[b] * M_b`` over upsampled masks, shape ``size`` (float64), added into ``out``;
    ``square``: ``sum_b weights[b] * M_b ** 2`` (second moments for standard errors).

    ``weights`` of shape ``(B, K)`` accumulate ``K`` weighted sums in one pass over the masks
    into ``out`` of shape ``(K, *size)`` (several targets' maps from the same masks).
    """
    masks = np.ascontiguousarray(masks, dtype=np.float32)
    weights = np.asarray(weights, np.float64)
    if weights.ndim == 2:
        if out is None:
            out = np.zeros((weights.shape[1],) + tuple(size), np.float64)
        _accumulate_many(masks, np.ascontiguousarray(weights), *geometry(masks, size, cell, offsets, smooth),
                         bool(square), out)
        return out
    if out is None:
        out = np.zeros(size, np.float64)
    _accumulate_many(masks, np.ascontiguousarray(weights[:, None]), *geometry(masks, size, cell, offsets, smooth),
                     bool(square), out[None])
    return out


def upsample(mask: np.ndarray, size: tuple[int, int], cell: tuple[float, float] | None = None,
             *, smooth: bool = True) -> np.ndarray:
    """One ``(gh, gw)`` mask to ``size`` with the same sampling the kernels use."""
    gh, gw = mask.shape
    cell = cell or (size[0] / gh, size[1] / gw)
    return accumulate(mask[None], np.ones(1), size, cell, smooth=smooth).astype(np.float32)


def baseline(x: np.ndarray, kind: str = "zeros", *, seed: int = 0, sigma: float | None = None) -> np.ndarray:
    """What a removed pixel becomes, in model space: zeros (the default, as every method's:
    the dataset mean for mean/std-normalised models), a blur of the image, its mean colour or
    seeded noise with the image's per-channel mean and spread."""
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
