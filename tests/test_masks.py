"""The Numba kernels against a plain numpy/scipy reference."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from blackbox_cam.methods.masks import accumulate, baseline, compose, compose_pairs, geometry, upsample


def reference_mask(mask, size, cell, off, smooth):
    gh, gw = mask.shape
    ys = np.arange(size[0], dtype=np.float64)
    xs = np.arange(size[1], dtype=np.float64)
    if smooth:
        u = np.clip((ys + off[0] + 0.5) / cell[0] - 0.5, 0, gh - 1)
        v = np.clip((xs + off[1] + 0.5) / cell[1] - 0.5, 0, gw - 1)
        uu, vv = np.meshgrid(u, v, indexing="ij")
        return ndimage.map_coordinates(mask.astype(np.float64), [uu, vv], order=1, mode="nearest")
    iy = np.clip(np.floor((ys + off[0]) / cell[0]).astype(int), 0, gh - 1)
    ix = np.clip(np.floor((xs + off[1]) / cell[1]).astype(int), 0, gw - 1)
    return mask[np.ix_(iy, ix)].astype(np.float64)


@pytest.mark.parametrize("smooth", [True, False])
@pytest.mark.parametrize("invert", [False, True])
def test_compose_matches_reference(smooth, invert):
    rng = np.random.default_rng(1)
    img = rng.normal(size=(3, 37, 29)).astype(np.float32)
    base = rng.normal(size=img.shape).astype(np.float32)
    masks = rng.random((5, 6, 5)).astype(np.float32)
    cell = (37 / 6 * 1.3, 29 / 5 * 1.1)
    offs = rng.uniform(0, 7, size=(5, 2))
    out = compose(img, base, masks, cell, offs, smooth=smooth, invert=invert)
    for b in range(5):
        m = reference_mask(masks[b], (37, 29), cell, offs[b], smooth)
        if invert:
            m = 1 - m
        np.testing.assert_allclose(out[b], m * img + (1 - m) * base, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("start,stop", [(0, 10), (3, 9), (0, 4), (6, 10), (4, 6)])
def test_compose_pairs_equals_compose_kept_then_removed(start, stop):
    """DE-CAM's antithetic stream (mask i kept for i < n, mask i - n removed after) from one kernel call
    and one geometry table per generation: byte-equal to composing each side on its own, for any
    slice, including slices that straddle the kept/removed boundary."""
    rng = np.random.default_rng(4)
    img = rng.normal(size=(3, 31, 27)).astype(np.float32)
    base = rng.normal(size=img.shape).astype(np.float32)
    masks = (rng.random((5, 6, 6)) > 0.5).astype(np.float32)
    cell, offs = (31 / 5, 27 / 5), np.floor(rng.uniform(0, 5, size=(5, 2)))
    want = np.concatenate([compose(img, base, masks, cell, offs), compose(img, base, masks, cell, offs, invert=True)])
    buf = np.full((10,) + img.shape, np.nan, np.float32)
    got = compose_pairs(img, base, masks, geometry(masks, img.shape[1:], cell, offs), start, stop, buf)
    np.testing.assert_array_equal(got, want[start:stop])
    with pytest.raises(ValueError):
        compose_pairs(img, base, masks, geometry(masks, img.shape[1:], cell, offs), 0, 11, np.empty((11,) + img.shape,
                                                                                                   np.float32))


def test_accumulate_is_weighted_sum_of_upsampled_masks():
    rng = np.random.default_rng(2)
    masks = rng.random((7, 4, 4)).astype(np.float32)
    w = rng.normal(size=7)
    offs = rng.integers(0, 5, size=(7, 2))
    got = accumulate(masks, w, (20, 24), (5.5, 6.5), offs)
    want = sum(w[b] * reference_mask(masks[b], (20, 24), (5.5, 6.5), offs[b], True) for b in range(7))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_compose_reuses_buffer_and_keeps_edges():
    img = np.ones((3, 16, 16), np.float32)
    base = np.zeros_like(img)
    buf = np.full((4, 3, 16, 16), np.nan, np.float32)
    ones = np.ones((2, 4, 4), np.float32)
    out = compose(img, base, ones, (4, 4), out=buf)
    assert out.base is buf or out is buf[:2] or np.shares_memory(out, buf)
    np.testing.assert_array_equal(out, 1.0)
    np.testing.assert_array_equal(upsample(np.eye(2, dtype=np.float32), (8, 8))[0, 0], 1.0)


@pytest.mark.parametrize("kind", ["blur", "mean", "zeros", "noise"])
def test_baselines_shape_and_determinism(kind):
    x = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    a, b = baseline(x, kind, seed=3), baseline(x, kind, seed=3)
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
