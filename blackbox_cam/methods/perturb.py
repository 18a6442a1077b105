"""Shared machinery of the black-box methods: score a stream of masks through the model.

Masks are composed into one reused ``(batch, C, H, W)`` buffer per model call
(:func:`blackbox_cam.masks.compose`), so memory is bounded by one batch at any budget.
"""
from __future__ import annotations

import numpy as np

from ..masks import BASELINES, compose
from .options import Option

#: Declared by every perturbation method (one declaration, one CLI flag, one help text).
BASELINE_OPTION = Option("baseline", str, "zeros", "What removed pixels become: zeros in model space (the "
                         "dataset-mean colour for mean/std-normalised models), a blur, the image mean or noise.",
                         choices=BASELINES)


class MaskScorer:
    """Scores masked versions of one image for one target class.

    ``scorer(masks, cell, offsets, smooth=..., invert=...)`` returns the target's probability
    for each mask; ``invert`` scores the complement (the mask's region removed instead of kept).
    """

    def __init__(self, clf, x: np.ndarray, base: np.ndarray, target: int) -> None:
        self.clf, self.x, self.base, self.target = clf, x, base, int(target)
        self._buf = np.empty((clf.batch_size,) + x.shape, np.float32)

    def __call__(self, masks: np.ndarray, cell: tuple[float, float], offsets: np.ndarray | None = None,
                 *, smooth: bool = True, invert: bool = False) -> np.ndarray:
        n = len(masks)
        out = np.empty(n, np.float64)
        step = len(self._buf)
        for i in range(0, n, step):
            j = min(n, i + step)
            batch = compose(self.x, self.base, masks[i:j], cell, None if offsets is None else offsets[i:j],
                            smooth=smooth, invert=invert, out=self._buf)
            out[i:j] = self.clf.probabilities(batch)[:, self.target]
        return out

