"""Faithfulness, localisation and agreement metrics for saliency maps.

All model-based metrics take a score function ``prob_fn(batch (N, 3, H, W) model space) ->
(N, num_classes)`` (e.g. :meth:`blackbox_cam.model.runtime.Classifier.probabilities`) and query it in
batches (a detector's maps: a ``[N, T]`` similarity per detection, :mod:`.detection`); everything
else is numpy/scipy. See ``docs/metrics.md`` for the protocols.
"""
from __future__ import annotations

from ._common import ProbFn, is_constant, salient_order
from .agreement import spearman, topk_iou
from .causal import Curve, auc, blur, deletion, gkern, insertion
from .detection import detection_deletion, detection_insertion, energy_per_detection, pointing_per_detection
from .localisation import box_mask, energy_in_region, pointing_game
from .road import RoadResult, impute_linear, road, road_images, road_result

__all__ = [
    "ProbFn", "Curve", "RoadResult", "auc", "blur", "box_mask", "deletion", "detection_deletion",
    "detection_insertion", "energy_in_region", "energy_per_detection", "pointing_per_detection",
    "gkern", "impute_linear", "insertion", "is_constant", "pointing_game", "road", "road_images", "road_result",
    "salient_order",
    "spearman", "topk_iou",
]
