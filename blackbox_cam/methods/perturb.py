"""Shared machinery of the black-box methods: score a stream of masks through the model.

Masks are composed into one reused ``(batch, C, H, W)`` buffer per model call
(:func:`blackbox_cam.methods.masks.compose`), so memory is bounded by one batch at any budget. The
buffer holds ``min(batch size, masks to score, MAX_BATCH_BYTES of input)`` images: a
``--batch-size 100000`` at budget 300 allocates 300 images at most, and never more than
:data:`MAX_BATCH_BYTES` (32 MiB; 55 images at 3 x 224 x 224).
"""
from __future__ import annotations

import numpy as np

from .masks import BASELINES, compose
from .options import Option
from .targets import AnyTarget, ClassTarget, DetectionTarget, as_target

#: Declared by every perturbation method (one declaration, one CLI flag, one help text).
BASELINE_OPTION = Option("baseline", str, "zeros", "What removed pixels become: zeros in model space (the "
                         "dataset-mean colour for mean/std-normalised models), a blur, the image mean or noise.",
                         choices=BASELINES)


MAX_BATCH_BYTES = 32 * 2 ** 20


def batch_capacity(clf, image_shape: tuple[int, ...], limit: int | None = None) -> int:
    """Images per model call: the classifier's batch size, cut to ``limit`` (the masks there are
    to score) and to :data:`MAX_BATCH_BYTES` of float32 input."""
    per_image = 4 * int(np.prod(image_shape))
    cap = min(int(clf.batch_size), max(1, MAX_BATCH_BYTES // per_image))
    return max(1, cap if limit is None else min(cap, int(limit)))


class MaskScorer:
    """Scores masked versions of one image for a target (:mod:`.targets`).

    ``scorer(masks, cell, offsets, smooth=..., invert=...)`` returns the target's score for each
    mask: ``[n]`` for a class index, ``[n, T]`` for a target object of ``T`` targets (a class's
    probability, a detection's D-RISE similarity; every target read from the same model call);
    ``invert`` scores the complement (the mask's region removed instead of kept).
    ``limit``, when known, is how many masks will be scored in all (the buffer need not be larger);
    :attr:`capacity` is the number of images per model call (:func:`batch_capacity`).
    """

    def __init__(self, clf, x: np.ndarray, base: np.ndarray, target: AnyTarget, limit: int | None = None) -> None:
        self.clf, self.x, self.base = clf, x, base
        self.target, self.flat = as_target(target), not isinstance(target, (ClassTarget, DetectionTarget))
        self.capacity = batch_capacity(clf, x.shape, limit)
        self._buf = np.empty((self.capacity,) + x.shape, np.float32)

    def __call__(self, masks: np.ndarray, cell: tuple[float, float], offsets: np.ndarray | None = None,
                 *, smooth: bool = True, invert: bool = False) -> np.ndarray:
        n = len(masks)
        out = np.empty((n, self.target.count), np.float64)
        step = len(self._buf)
        for i in range(0, n, step):
            j = min(n, i + step)
            batch = compose(self.x, self.base, masks[i:j], cell, None if offsets is None else offsets[i:j],
                            smooth=smooth, invert=invert, out=self._buf)
            out[i:j] = self.target.scores(self.clf, batch)
        return out[:, 0] if self.flat else out

