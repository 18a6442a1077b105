"""Faithfulness, localisation and agreement metrics for saliency maps.

All model-based metrics take a score function ``prob_fn(batch (N, 3, H, W) model space) ->
(N, num_classes)`` (e.g. :meth:`blackbox_cam.model.runtime.Classifier.probabilities`) and query it in
batches; everything else is numpy/scipy. See ``docs/metrics.md`` for the protocols.
"""
from __future__ import annotations

from ._common import ProbFn, is_constant, salient_order
from .agreement import spearman, topk_iou
from .causal import Curve, auc, blur, deletion, gkern, insertion
from .localisation import box_mask, energy_in_region, pointing_game
from .road import RoadResult, impute_linear, road, road_images, road_result

__all__ = [
    "ProbFn", "Curve", "RoadResult", "auc", "blur", "box_mask", "deletion", "energy_in_region",
    "gkern", "impute_linear", "insertion", "is_constant", "pointing_game", "road", "road_images", "road_result",
    "salient_order",
    "spearman", "topk_iou",
]
