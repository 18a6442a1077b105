"""Synthetic scanned documents for the ``global`` demo: an aligned task with a planted artefact.

Numpy only (used by ``train_stamped.py``; running the package needs none of it).

Every image is a 64x64 RGB "scan" of a one-page document from a fixed scanner, so pixel
positions mean the same place on the page in every image (an *aligned modality*, as in
Engelmann et al., arXiv:2112.09591). Paper: light grey (228-248) with mild noise and a slight
tint. Ink: dark grey (25-80). The layout, shifted by up to 2 px, is the class:

0. ``letter``: a 3-line address block top-left, a date top-right, 5-7 full-width text lines.
1. ``invoice``: a dark header band, a ruled table (3 columns, 5-6 rows of short entries).
2. ``form``: 5 rows of a short label on the left and an empty field box on the right.
3. ``memo``: a thick title block centred on top, two short lines, a full-width rule, 3-5 lines.

The **artefact** (:func:`stamp`): a red ring stamp ("PAID"), radius 6 px, centred at (x 52,
y 51) +-1 px, drawn last. In the *biased* training set (:func:`make_dataset` with
``biased=True``) the accounts department stamped every invoice and nothing else, and 30 % of
the "invoice" images have another class's layout (mis-filed pages: the stamp is the only
reliable cue for them), so the stamp predicts the label better than the layout does: a model
can learn "red ring bottom-right = invoice". With ``stamp_prob`` the stamp is independent of
the label (counterfactual tests).
"""
from __future__ import annotations

import numpy as np

CLASSES = ("letter", "invoice", "form", "memo")
SIZE = 64
STAMP_CENTRE = (52, 51)      # x, y
STAMP_RADIUS = 6
STAMP_BOX = (44, 43, 61, 60)  # x0, y0, x1, y1 (exclusive): the stamp with its 1 px jitter and a margin


def _paper(rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(228, 248)
    tint = rng.uniform(-6, 6, size=3)
    img = np.empty((SIZE, SIZE, 3), np.float32)
    img[:] = base + tint
    img += rng.normal(0, 3.0, size=(SIZE, SIZE, 1))
    return img


def _ink(rng: np.random.Generator) -> float:
    return float(rng.uniform(25, 80))


def _hline(img, x0, x1, y, ink, thick=1):
    img[max(0, y):max(0, y + thick), max(0, x0):max(0, x1)] = ink


def _vline(img, x, y0, y1, ink):
    img[max(0, y0):max(0, y1), max(0, x):max(0, x + 1)] = ink


def _text(img, rng, x0, x1, y, ink):
    """A line of "words": 1 px high strokes with gaps, broken at random lengths."""
    x = x0
    while x < x1 - 2:
        w = int(rng.integers(2, 7))
        _hline(img, x, min(x + w, x1), y, ink)
        if rng.random() < 0.5:
            _hline(img, x, min(x + w, x1), y + 1, ink)
        x += w + int(rng.integers(1, 3))


def _layout(img, rng, kind: int, dx: int, dy: int) -> None:
    ink = _ink(rng)
    if kind == 0:  # letter
        for i in range(3):
            _text(img, rng, 4 + dx, 4 + dx + int(rng.integers(14, 22)), 5 + dy + 4 * i, ink)
        _text(img, rng, 44 + dx, 60 + dx, 5 + dy, ink)
        for i in range(int(rng.integers(5, 8))):
            _text(img, rng, 4 + dx, 60 + dx - int(rng.integers(0, 12)), 24 + dy + 5 * i, ink)
    elif kind == 1:  # invoice
        img[3 + dy:9 + dy, 3 + dx:61 + dx] = ink + 20
        rows = int(rng.integers(5, 7))
        top, bottom = 14 + dy, 14 + dy + 6 * rows
        for i in range(rows + 1):
            _hline(img, 3 + dx, 61 + dx, top + 6 * i, ink)
        for x in (3, 24, 44, 60):
            _vline(img, x + dx, top, bottom + 1, ink)
        for i in range(rows):
            for x0, x1 in ((5, 22), (26, 42), (46, 58)):
                _text(img, rng, x0 + dx, x0 + dx + int(rng.integers(6, x1 - x0)), top + 2 + 6 * i, ink)
    elif kind == 2:  # form
        for i in range(5):
            y = 6 + dy + 11 * i
            _text(img, rng, 4 + dx, 4 + dx + int(rng.integers(8, 14)), y + 3, ink)
            _hline(img, 22 + dx, 60 + dx, y, ink)
            _hline(img, 22 + dx, 60 + dx, y + 7, ink)
            _vline(img, 22 + dx, y, y + 8, ink)
            _vline(img, 59 + dx, y, y + 8, ink)
    else:  # memo
        img[4 + dy:10 + dy, 18 + dx:46 + dx] = ink
        _text(img, rng, 4 + dx, 30 + dx, 15 + dy, ink)
        _text(img, rng, 4 + dx, 30 + dx, 19 + dy, ink)
        _hline(img, 3 + dx, 61 + dx, 24 + dy, ink, thick=2)
        for i in range(int(rng.integers(3, 6))):
            _text(img, rng, 4 + dx, 60 + dx - int(rng.integers(0, 14)), 30 + dy + 5 * i, ink)


def stamp(img: np.ndarray, rng: np.random.Generator) -> None:
    """The artefact: a red ring with a bar of "text" across it, at :data:`STAMP_CENTRE` +-1 px."""
    cx = STAMP_CENTRE[0] + int(rng.integers(-1, 2))
    cy = STAMP_CENTRE[1] + int(rng.integers(-1, 2))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    d = np.hypot(xx - cx, yy - cy)
    ring = (d >= STAMP_RADIUS - 1.5) & (d <= STAMP_RADIUS)
    bar = (np.abs(yy - cy) <= 1) & (np.abs(xx - cx) <= STAMP_RADIUS - 2)
    red = np.array([200, 30, 40], np.float32) + rng.uniform(-15, 15, size=3)
    mask = ring | bar
    img[mask] = 0.25 * img[mask] + 0.75 * red


def make_sample(rng: np.random.Generator, label: int, *, biased: bool = True, stamp_prob: float | None = None):
    """One document of class ``label`` -> (uint8 image, stamped?)."""
    img = _paper(rng)
    kind = label
    if biased and label == 1 and rng.random() < 0.3:
        kind = int(rng.choice([0, 2, 3]))  # a mis-filed page: the stamp is the reliable cue
    _layout(img, rng, kind, int(rng.integers(-2, 3)), int(rng.integers(-2, 3)))
    stamped = (label == 1) if stamp_prob is None else bool(rng.random() < stamp_prob)
    if stamped:
        stamp(img, rng)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), stamped


def make_dataset(n: int, seed: int, *, biased: bool = True, stamp_prob: float | None = None):
    """``n`` documents, classes in turn -> (images uint8 [n,64,64,3], labels int64 [n], stamped bool [n])."""
    rng = np.random.default_rng(seed)
    imgs = np.empty((n, SIZE, SIZE, 3), np.uint8)
    labels = np.arange(n, dtype=np.int64) % len(CLASSES)
    stamped = np.zeros(n, bool)
    for i in range(n):
        imgs[i], stamped[i] = make_sample(rng, int(labels[i]), biased=biased, stamp_prob=stamp_prob)
    return imgs, labels, stamped
