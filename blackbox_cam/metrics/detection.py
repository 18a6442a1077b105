"""Metrics for a detector's maps: does each detection's map point at its evidence, and is it causal?

A detector's explanation is one map per detection (issue 27). The localisation metrics of
:mod:`.localisation` apply per detection with the region that should hold its evidence (its own
box, or a known cue inside it), and the causal metrics of :mod:`.causal` apply with the
detection's D-RISE similarity as the score: ``score_fn(batch) -> [N, T]`` is any callable that
returns one column per target (e.g. ``lambda b: target.scores(detector, b)`` with a
:class:`blackbox_cam.methods.targets.DetectionTarget`, Petsiuk et al. 2021's similarity over the
masked image's candidates), and ``column`` picks the detection, exactly as ``target`` picks a
class for a classifier. Pure numpy over that callable: this module knows no model.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .causal import Curve, deletion, insertion
from .localisation import Region, energy_in_region, pointing_game

#: ``score_fn(batch (N, C, H, W) model space) -> (N, T)``: one score column per detection.
ScoreFn = Callable[[np.ndarray], np.ndarray]


def pointing_per_detection(maps: Sequence[np.ndarray], regions: Sequence[Region], *, tolerance: float = 0.0
                           ) -> np.ndarray:
    """Pointing-game hits (bool ``[T]``): map ``t``'s maximum within ``tolerance`` pixels of region ``t``
    (its box, or its cue; :func:`.localisation.pointing_game`, Zhang et al. 2018)."""
    if len(maps) != len(regions):
        raise ValueError(f"{len(maps)} maps for {len(regions)} regions")
    return np.array([pointing_game(m, r, tolerance=tolerance) for m, r in zip(maps, regions)], bool)


def energy_per_detection(maps: Sequence[np.ndarray], regions: Sequence[Region]) -> np.ndarray:
    """Energy-based pointing (``[T]``): share of map ``t``'s mass inside region ``t``
    (:func:`.localisation.energy_in_region`, Wang et al. 2020)."""
    if len(maps) != len(regions):
        raise ValueError(f"{len(maps)} maps for {len(regions)} regions")
    return np.array([energy_in_region(m, r) for m, r in zip(maps, regions)], np.float64)


def detection_deletion(score_fn: ScoreFn, x: np.ndarray, saliency: np.ndarray, column: int, **kw) -> Curve:
    """Deletion curve of detection ``column`` (lower is better): :func:`.causal.deletion` with the
    detection's similarity as the score (pixels removed most salient first)."""
    return deletion(score_fn, x, saliency, column, **kw)


def detection_insertion(score_fn: ScoreFn, x: np.ndarray, saliency: np.ndarray, column: int, **kw) -> Curve:
    """Insertion curve of detection ``column`` (higher is better): :func:`.causal.insertion` with the
    detection's similarity as the score (pixels restored onto the blurred image most salient first)."""
    return insertion(score_fn, x, saliency, column, **kw)
