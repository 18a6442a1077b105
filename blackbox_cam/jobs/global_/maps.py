"""Global saliency maps: image-wise maps aggregated pixel-wise into label-wise and overall maps.

Engelmann, Storkey & Bernabeu, "Global explainability in aligned image modalities",
arXiv:2112.09591: where images are aligned (each pixel position means the same place on the
object: scans, fixed cameras, documents, inspection rigs), the pixel-wise average of many
image-wise maps shows what a model looks at *in general*: domain knowledge, or an artefact such
as a watermark or a scanner label.

Our aggregation (documented in docs/global.md):

1. every map is taken at the **model input size** (the size the methods work at, so no
   resampling), made non-negative and scaled to sum 1 (:func:`normalise_map`), so every image
   weighs the same however peaked or flat its map is;
2. per label (ground truth when given, else the prediction): the pixel-wise **mean** and the
   pixel-wise **standard deviation** (population, ``ddof=0``) over that label's images, because a
   mean hides disagreement;
3. the **overall** map is the mean of the label maps (each label weighs the same, however many
   images it has).

:class:`Aggregator` does this in one streamed pass (Welford's running mean and sum of squared
deviations in float64): memory is ``O(labels x H x W)`` whatever the number of images, and no
list of maps is ever kept. It also keeps each label's mean image, the background of the pictures.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def normalise_map(saliency: np.ndarray) -> np.ndarray:
    """Non-negative, summing to 1 (float64). Negative values become 0; an all-zero (or non-finite)
    map becomes uniform ("no pixel preferred"), so it still counts as one image."""
    s = np.nan_to_num(np.asarray(saliency, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    s = np.maximum(s, 0.0)
    total = s.sum()
    if not total > 0:
        return np.full(s.shape, 1.0 / s.size)
    return s / total


@dataclass
class _Running:
    n: int
    mean: np.ndarray
    m2: np.ndarray
    image_sum: np.ndarray | None = None
    empty: int = 0


@dataclass
class Aggregator:
    """Streamed per-label mean and per-pixel spread of normalised maps.

    Parameters
    ----------
    size : ``(H, W)`` every map must have (the model input size).

    ``add(label, map)`` in any number; :meth:`mean`, :meth:`std`, :meth:`overall` at any time.
    """

    size: tuple[int, int]
    _groups: dict[int, _Running] = field(default_factory=dict)

    def add(self, label: int, saliency: np.ndarray, image: np.ndarray | None = None) -> None:
        """Add one image's map (any scale; normalised here) to ``label``; ``image`` (H, W, 3) is
        optional and only feeds the label's mean image."""
        s = np.asarray(saliency)
        if s.shape != tuple(self.size):
            raise ValueError(f"map of shape {s.shape} given to an aggregator of size {tuple(self.size)}; "
                             "maps must be at the model input size")
        m = normalise_map(s)
        g = self._groups.get(int(label))
        if g is None:
            g = self._groups[int(label)] = _Running(0, np.zeros(self.size), np.zeros(self.size))
        g.n += 1
        if not (np.asarray(s) > 0).any():
            g.empty += 1
        delta = m - g.mean
        g.mean += delta / g.n
        g.m2 += delta * (m - g.mean)
        if image is not None:
            img = np.asarray(image, np.float64)
            g.image_sum = img.copy() if g.image_sum is None else g.image_sum + img

    @property
    def labels(self) -> list[int]:
        """Labels seen, sorted."""
        return sorted(self._groups)

    def count(self, label: int) -> int:
        return self._groups[label].n

    def empty_maps(self, label: int) -> int:
        """How many of ``label``'s maps were all zero (counted as uniform)."""
        return self._groups[label].empty

    def mean(self, label: int) -> np.ndarray:
        """The label's global map: mean of its normalised maps (sums to 1), float64 (H, W)."""
        return self._groups[label].mean.copy()

    def std(self, label: int) -> np.ndarray:
        """Per-pixel population standard deviation of the label's normalised maps."""
        g = self._groups[label]
        return np.sqrt(np.maximum(g.m2 / g.n, 0.0))

    def mean_image(self, label: int) -> np.ndarray | None:
        """Mean of the images added with ``image=`` (H, W, 3), or ``None``."""
        g = self._groups[label]
        return None if g.image_sum is None else g.image_sum / g.n

    def overall(self) -> np.ndarray:
        """Mean of the label maps (each label weighs the same); sums to 1."""
        if not self._groups:
            raise ValueError("no maps were added")
        return np.mean([self._groups[k].mean for k in self.labels], axis=0)

    def overall_image(self) -> np.ndarray | None:
        imgs = [self.mean_image(k) for k in self.labels]
        return None if any(i is None for i in imgs) else np.mean(imgs, axis=0)
