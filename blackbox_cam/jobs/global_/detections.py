"""``global`` on a detector: every detection's map aligned to its box, averaged per label.

A classifier's maps share one frame (the model input), so ``global`` averages them pixel by
pixel. A detector's objects sit anywhere and at any size, so the image frame would average
*where objects happen to be*, not *what in an object* the model looks at. Here each
detection's image-sized map (:mod:`blackbox_cam.explainer.detection_maps`, all of an image's
detections from one query set) is **cropped to its box grown by ``margin``** (the same growth
as the gate's box rule: width and height times ``1 + margin`` about the centre; the part of
the crop beyond the image is zero) and **resized to a common grid** (``grid x grid``,
bilinear), then streamed into the same :class:`~.maps.Aggregator` per detected label, with the
same image crop for the label's mean image. Box-relative alignment keeps "the top-right corner
of the object" at the same cell for every detection (what a planted cue or a part-based cue
needs), and the margin keeps the context just around the box visible (evidence that leaks out
of the box shows as mass outside the inner frame). The aspect ratio is not kept (a box is
stretched to a square): for labels whose boxes vary much in shape a cell then means a relative,
not an absolute, position. PEPPR (which erases pixels of whole images by a global ranking)
does not apply to box-aligned maps and is not computed.

The work on one image is :func:`global_detection_unit`, a unit of the shared executor
(:mod:`blackbox_cam.jobs.executors`): in this process, or on a Ray worker holding its own
:class:`~blackbox_cam.model.detector.Detector` (``global --ray``); it sends back the crops only,
and the driver aggregates them in input order, so both write the same files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from PIL import Image

from ...errors import BlackboxCamError
from ...explainer.detection_maps import choose_targets, explain_detections, score_detections
from ..dataset import Item, MapRequest, expand_inputs
from ..executors import Failed, ImageSource, LocalExecutor, item_tasks
from .job import GlobalResult, _write_summary
from .maps import Aggregator

#: Side of the common box grid (cells) and the default margin around each box.
GRID = 64
MARGIN = 0.5


def box_crop(array: np.ndarray, box: Iterable[float], margin: float, grid: int) -> np.ndarray:
    """``array`` (H, W) or (H, W, C) cropped to ``box`` grown by ``margin`` and resized to
    ``grid x grid`` (bilinear); outside the image is 0. Float64."""
    a = np.asarray(array, np.float64)
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = (x1 - x0) * (1 + margin) / 2, (y1 - y0) * (1 + margin) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    chans = a.reshape(a.shape[0], a.shape[1], -1)
    out = []
    for c in range(chans.shape[2]):
        im = Image.fromarray(chans[:, :, c].astype(np.float32), mode="F")
        # the affine crop samples outside the image as 0 (PIL's fill for mode F)
        out.append(np.asarray(im.transform((grid, grid), Image.Transform.EXTENT, (cx - dx, cy - dy, cx + dx, cy + dy),
                                           Image.Resampling.BILINEAR), np.float64))
    res = np.stack(out, -1)
    return res[:, :, 0] if a.ndim == 2 else res


#: The reason recorded in ``skipped`` for an image with no detection to aggregate.
NO_DETECTION = "no detection above --conf"


def check_margin(margin: Any) -> None:
    """One line saying what is wrong with ``margin`` (checked before anything runs)."""
    if not (isinstance(margin, (int, float)) and np.isfinite(margin) and margin >= 0):
        raise BlackboxCamError(f"--box-margin {margin!r} must be a share >= 0 of the box's size")


def global_detection_unit(det: Any, source: ImageSource, request: MapRequest, seed: int, margin: float,
                          grid: int) -> list[tuple[int, np.ndarray, np.ndarray, dict[str, Any]]] | Failed:
    """One image's part of ``global`` on a detector, a unit of the shared executor
    (:mod:`blackbox_cam.jobs.executors`): every detection explained by ``request`` from one
    query set, its map and the image cropped to its grown box (:func:`box_crop`). Returns one
    ``(label, map crop, image crop, record)`` per detection (an empty list: no detection), or
    :class:`~blackbox_cam.jobs.executors.Failed` for a bad image. Only the ``grid x grid`` crops
    travel back from a Ray worker; the driver alone aggregates them, in input order."""
    try:
        image, _size = source.read()
        scored = score_detections(det, image)
        chosen = choose_targets(det, scored)
        if chosen.count == 0:
            return []
        found = explain_detections(det, scored, request.call(), chosen, seed=seed)
    except BlackboxCamError as e:
        return Failed(str(e))
    return [(res.target, box_crop(res.saliency, res.box, margin, grid), box_crop(scored.image, res.box, margin, grid),
             {"detection": res.detection, "box": [round(v, 2) for v in res.box], "label": res.target,
              "score": res.confidence, "similarity": float(res.score)})
            for res in found]


def run_global_detections(det: Any, inputs: Iterable[str | os.PathLike | Item], out_dir: str | os.PathLike, *,
                          method: str = "drise", budget: int | None = None, seed: int = 0,
                          options: dict[str, Any] | None = None, margin: float = MARGIN, grid: int = GRID,
                          say: Callable[[str], None] | None = None, executor: Any = None) -> GlobalResult:
    """Every detection of every input explained with ``method``, aligned to its box
    (:func:`box_crop`) and averaged per detected label; writes the files ``global`` writes
    (:func:`.plots.write_maps`, ``global.json``) except PEPPR's. ``executor``: where the
    per-image units (:func:`global_detection_unit`) run, in this process when None or on Ray
    workers (:class:`~blackbox_cam.jobs.executors.RayExecutor`); the files are the same."""
    from ...io.output import ensure_dir
    from ...methods import bind_all
    from .plots import write_maps

    call = bind_all([method], budget, options or {}, clf=det)[method]
    check_margin(margin)
    executor = executor or LocalExecutor(det)
    request = MapRequest.of(call)
    inputs = list(inputs)
    items = inputs if inputs and all(isinstance(i, Item) for i in inputs) else expand_inputs(inputs)
    out = ensure_dir(out_dir)
    say = say or (lambda _m: None)
    agg = Aggregator((grid, grid))
    result = GlobalResult(Path(out), agg, {}, [], [], None, {}, {})

    tasks = item_tasks(items, executor, global_detection_unit, request, seed, margin, grid)
    for item, value in executor.imap(tasks):
        if item.skip:
            result.skipped.append({"image": str(item.path), "name": item.name, "reason": item.error or ""})
            continue
        if isinstance(value, Failed):
            result.failures.append({"image": str(item.path), "name": item.name, "error": value.error})
            say(f"error: {item.name}: {value.error}")
            continue
        if not value:
            result.skipped.append({"image": str(item.path), "name": item.name, "reason": NO_DETECTION})
            say(f"{item.name}: no detection, nothing to aggregate")
            continue
        result.computed += 1
        for label, sal, img, record in value:
            agg.add(label, sal, img)
            result.images.append({"image": str(item.path), "name": item.name, **record})
    if not result.images:
        raise BlackboxCamError(f"no detection could be explained ({len(result.failures)} image(s) failed, "
                               f"{len(result.skipped)} without detections)")
    result.names = {k: det.label(k) for k in agg.labels}
    result.settings = {"model": str(det.path), "task": "detector", "method": method, "budget": call.budget,
                       "seed": seed, "options": dict(call.options), "target": "detected label",
                       "alignment": f"each detection's map cropped to its box grown by {margin:g} and resized to "
                                    f"{grid}x{grid} (bilinear; inner box = the middle {1 / (1 + margin):.0%})",
                       "box_margin": margin, "grid": grid, "input_size": [grid, grid],
                       "num_classes": det.num_classes, "peppr": None,
                       "conf": getattr(det, "conf", None), "iou": getattr(det, "iou", None),
                       "max_detections": getattr(det, "max_detections", None)}
    result.files.update(write_maps(agg, result.names, result.out))
    _write_summary(result)
    return result
