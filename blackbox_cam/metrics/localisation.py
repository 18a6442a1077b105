"""Does the map point at the evidence? Pointing game and energy in a region.

Boxes are ``(x0, y0, x1, y1)`` in pixels of the map, half-open like numpy slices: pixel
``(row, col)`` is inside when ``x0 <= col < x1`` and ``y0 <= row < y1`` (geometrically: its centre
``(col + 0.5, row + 0.5)`` lies in the rectangle). A region may also be an (H, W) bool mask.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from ._common import check_map, is_constant

Box = Sequence[float]
Region = Union[Box, np.ndarray]


def box_mask(box: Box, shape: tuple[int, int], tolerance: float = 0.0) -> np.ndarray:
    """(H, W) bool mask of the pixels inside ``box`` or within ``tolerance`` pixels of one inside.

    Distances are Euclidean between pixel centres, so ``tolerance=1`` adds the 4-neighbours of
    the box's border pixels but not the diagonal corners.
    """
    if len(box) != 4:
        raise ValueError(f"a box is (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box {box!r} is empty: need x1 > x0 and y1 > y0")
    h, w = shape
    cy = np.arange(h) + 0.5
    cx = np.arange(w) + 0.5
    inside_y = (cy >= y0) & (cy < y1)
    inside_x = (cx >= x0) & (cx < x1)
    if tolerance <= 0:
        return inside_y[:, None] & inside_x[None, :]
    # distance between pixel centres: to the nearest centre inside the box (TorchRay's convention)
    lo_y, hi_y = np.floor(y0 - 0.5) + 1.5, np.ceil(y1 - 0.5) - 0.5
    lo_x, hi_x = np.floor(x0 - 0.5) + 1.5, np.ceil(x1 - 0.5) - 0.5
    dy = np.maximum(np.maximum(lo_y - cy, cy - hi_y), 0.0)
    dx = np.maximum(np.maximum(lo_x - cx, cx - hi_x), 0.0)
    return dy[:, None] ** 2 + dx[None, :] ** 2 <= float(tolerance) ** 2 + 1e-9


def _region_mask(region: Region, shape: tuple[int, int], tolerance: float = 0.0) -> np.ndarray:
    arr = np.asarray(region)
    if arr.ndim == 2:
        if arr.shape != shape:
            raise ValueError(f"region mask has shape {arr.shape}, the map {shape}")
        mask = arr.astype(bool)
        if tolerance > 0:
            from scipy.ndimage import distance_transform_edt
            mask = distance_transform_edt(~mask) <= tolerance
        return mask
    return box_mask(region, shape, tolerance)


def pointing_game(saliency: np.ndarray, region: Region, *, tolerance: float = 15.0) -> bool:
    """Pointing-game hit: is the map's maximum within ``tolerance`` pixels of the region?

    The maximum may be a plateau (occlusion and mask-based maps have them): all pixels within
    1e-6 of the range below the maximum count, and the map hits when at least half of them are
    within tolerance. A constant map points nowhere and is a miss.

    References
    ----------
    Zhang, Bargal, Lin, Brandt, Shen & Sclaroff, "Top-down Neural Attention by Excitation
    Backprop", IJCV 2018 (ECCV 2016), sec. 5.1; tolerance of 15 pixels as in their evaluation
    and TorchRay's ``PointingGame``.
    """
    s = check_map(saliency)
    if is_constant(s):
        return False
    hit = _region_mask(region, s.shape, tolerance)
    top = s >= s.max() - 1e-6 * (s.max() - s.min())
    return bool(hit[top].mean() >= 0.5)


def energy_in_region(saliency: np.ndarray, region: Region) -> float:
    """Share of the map's (non-negative) mass inside the region, in [0, 1].

    Negative values are clipped to 0 first. A map with no mass (all zeros or all negative) is
    treated as uniform, so the result is the region's share of the image area (the score of an
    uninformative map) rather than 0/0; a constant positive map gives the same value.

    References
    ----------
    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
    Networks", CVPR-W 2020, sec. 4.3 ("energy-based pointing game").
    """
    s = check_map(saliency)
    mask = _region_mask(region, s.shape)
    pos = np.clip(s, 0.0, None)
    total = float(pos.sum())
    if total <= 0.0:
        return float(mask.mean())
    return float(pos[mask].sum() / total)
