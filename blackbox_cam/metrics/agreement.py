"""Do two maps agree? Rank correlation and overlap of their most salient pixels.

Used to compare a black-box map with a white-box one (e.g. DE-CAM vs Grad-CAM) on the same image.
Both maps must have the same shape (resize first).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from ._common import check_map, is_constant, salient_rank


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps over all pixels, in [-1, 1].

    Ties get average ranks (the usual definition). If either map is constant the correlation is
    undefined; we return 0.0 (no rank agreement) instead of NaN.

    References
    ----------
    Spearman, "The proof and measurement of association between two things", Am. J. Psychol.
    1904; used for saliency sanity checks by Adebayo et al., "Sanity Checks for Saliency Maps",
    NeurIPS 2018.
    """
    a = check_map(a, name="first map")
    b = check_map(b, a.shape, name="second map")
    if is_constant(a) or is_constant(b):
        return 0.0
    ra, rb = rankdata(a.ravel()), rankdata(b.ravel())
    ra -= ra.mean()
    rb -= rb.mean()
    den = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float(np.clip((ra * rb).sum() / den, -1.0, 1.0)) if den > 0 else 0.0


def topk_iou(a: np.ndarray, b: np.ndarray, k: float = 20.0, *, seed: int = 0) -> float:
    """Intersection over union of the top ``k`` percent pixels of two maps, in [0, 1].

    Each map's top set has exactly ``round(k / 100 * H * W)`` pixels (at least one); ties are
    broken by a random permutation drawn from ``seed`` (the same rule as the deletion metric), so
    a constant map selects random pixels and scores at the chance level (about ``k / (200 - k)``).

    References
    ----------
    Top-k overlap of saliency maps as in Adebayo et al., NeurIPS 2018, and the localisation IoU
    of Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016.
    """
    a = check_map(a, name="first map")
    b = check_map(b, a.shape, name="second map")
    if not 0.0 < k <= 100.0:
        raise ValueError(f"k is a percentage in (0, 100], got {k}")
    n = max(1, int(round(k / 100.0 * a.size)))
    ta = salient_rank(a, seed) < n
    tb = salient_rank(b, seed + 1) < n
    return float((ta & tb).sum() / (ta | tb).sum())
