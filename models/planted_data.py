"""Synthetic "planted evidence" images for fast, checkable saliency tests (numpy only).

Each sample is a 64x64 RGB uint8 image whose label is decided ONLY by one small
*target* object, so a correct saliency map for the predicted class must peak on it.

Image recipe (in drawing order):

1. Background: smooth colour noise, a random 5x5 grid of RGB colours upsampled
   bilinearly to 64x64.
2. 4-8 random filled ellipses ("blobs", radii 3-14 px) in random colours.
3. 1-3 *distractors*: the same four shapes as the classes (random shape, size 6-14 px)
   in random colours. They never overlap the target (kept >= 2 px away).
4. The target: one of the four class shapes, size s x s with s in 8..12 px, at a uniformly
   random position (>= 1 px from the border), in the fixed bright colour TARGET_RGB.
5. Gaussian pixel noise (std 5) everywhere, clipped to 0..255.

Every non-target colour (background, blobs, distractors) has all channels in
0..NON_TARGET_MAX (=170), whereas TARGET_RGB = (255, 220, 40): R and G of the target are far
above anything else, so the target is identifiable by colour, the class by its shape, and
nothing else in the image carries class information (distractor shapes are drawn
independently of the label, in non-target colours).

Classes (index: name): 0 square (filled), 1 cross (plus sign, arm width ~s/3),
2 ring (circle outline, ~2 px thick), 3 triangle (filled, apex up).

The bounding box of a sample is the tight box of the target's drawn pixels as
(x0, y0, x1, y1), inclusive-exclusive (pixels x0 <= x < x1, y0 <= y < y1).

Determinism: ``make_dataset(n, seed)`` uses ``numpy.random.default_rng(seed)`` only, so the
same (n, seed) always gives the same arrays; datasets with different seeds are independent.
"""
from __future__ import annotations

import numpy as np

SIZE = 64
CLASSES = ("square", "cross", "ring", "triangle")
TARGET_RGB = (255.0, 220.0, 40.0)
NON_TARGET_MAX = 170.0
NOISE_STD = 5.0


def shape_mask(kind: int, s: int) -> np.ndarray:
    """Boolean s x s mask of shape ``kind`` (index into CLASSES)."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    c = (s - 1) / 2.0
    if kind == 0:  # square
        m = np.ones((s, s), bool)
    elif kind == 1:  # cross
        half = max(2, round(s / 3)) / 2.0
        m = (np.abs(xx - c) < half) | (np.abs(yy - c) < half)
    elif kind == 2:  # ring
        d = np.hypot(xx - c, yy - c)
        m = (d <= s / 2.0) & (d >= s / 2.0 - 2.2)
    elif kind == 3:  # triangle, apex up
        m = np.abs(xx - c) <= (yy + 1) / 2.0
    else:
        raise ValueError(kind)
    return m


def _smooth_background(rng: np.random.Generator) -> np.ndarray:
    grid = rng.uniform(0, NON_TARGET_MAX, size=(5, 5, 3))
    t = np.linspace(0, 4, SIZE)
    i0 = np.minimum(np.floor(t).astype(int), 3)
    f = (t - i0)[:, None]
    # bilinear: rows then columns
    rows = grid[i0] * (1 - f)[:, :, None] + grid[i0 + 1] * f[:, :, None]          # 64 x 5 x 3
    img = rows[:, i0] * (1 - f.T)[:, :, None] + rows[:, i0 + 1] * f.T[:, :, None]  # 64 x 64 x 3
    return img


def _paint(img: np.ndarray, mask: np.ndarray, x: int, y: int, rgb) -> None:
    h, w = mask.shape
    region = img[y:y + h, x:x + w]
    region[mask] = rgb


def make_sample(rng: np.random.Generator, label: int | None = None):
    """Return (image uint8 [64,64,3], label int, box (x0,y0,x1,y1))."""
    if label is None:
        label = int(rng.integers(len(CLASSES)))
    img = _smooth_background(rng)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for _ in range(int(rng.integers(4, 9))):  # blobs
        cy, cx = rng.uniform(0, SIZE, 2)
        ry, rx = rng.uniform(3, 14, 2)
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        img[m] = rng.uniform(0, NON_TARGET_MAX, 3)
    s = int(rng.integers(8, 13))
    tx, ty = (int(v) for v in rng.integers(1, SIZE - s, 2))
    tmask = shape_mask(label, s)
    for _ in range(int(rng.integers(1, 4))):  # distractors, away from the target
        for _attempt in range(20):
            ds = int(rng.integers(6, 15))
            dx, dy = (int(v) for v in rng.integers(0, SIZE - ds + 1, 2))
            if dx + ds + 2 <= tx or tx + s + 2 <= dx or dy + ds + 2 <= ty or ty + s + 2 <= dy:
                _paint(img, shape_mask(int(rng.integers(len(CLASSES))), ds), dx, dy,
                       rng.uniform(0, NON_TARGET_MAX, 3))
                break
    _paint(img, tmask, tx, ty, TARGET_RGB)
    img = img + rng.normal(0.0, NOISE_STD, img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(tmask)
    box = (tx + int(xs.min()), ty + int(ys.min()), tx + int(xs.max()) + 1, ty + int(ys.max()) + 1)
    return img, label, box


def make_dataset(n: int, seed: int):
    """n samples from ``default_rng(seed)``; labels cycle evenly through the classes in a
    random order. Returns images uint8 [n,64,64,3], labels int64 [n], boxes int64 [n,4]."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    imgs = np.empty((n, SIZE, SIZE, 3), np.uint8)
    boxes = np.empty((n, 4), np.int64)
    for i in range(n):
        imgs[i], _, boxes[i] = make_sample(rng, int(labels[i]))
    return imgs, labels.astype(np.int64), boxes


if __name__ == "__main__":  # quick look: python models/planted_data.py /tmp/planted_grid.png
    import sys

    from PIL import Image

    ims, labs, bxs = make_dataset(16, 123)
    grid = ims.reshape(4, 4, SIZE, SIZE, 3).transpose(0, 2, 1, 3, 4).reshape(4 * SIZE, 4 * SIZE, 3)
    out = sys.argv[1] if len(sys.argv) > 1 else "planted_grid.png"
    Image.fromarray(grid).resize((8 * SIZE, 8 * SIZE), Image.NEAREST).save(out)
    print(out, [CLASSES[k] for k in labs], bxs.tolist())
