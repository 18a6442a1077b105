"""``compare`` on a detector: every detection of every image, each method's map, scored.

A detection is one more kind of target (:class:`~blackbox_cam.methods.targets.DetectionTarget`),
so this module only decides *which* targets and *which* score: each image is asked once
(:func:`~blackbox_cam.explainer.detection_maps.score_detections`), its detections chosen as
``explain`` chooses them (``--target``, ``--detection``), every method explains all of them
from one query set (:func:`~blackbox_cam.explainer.detection_maps.explain_detections`), and
each detection's map is scored with :mod:`blackbox_cam.metrics.detection`:

* faithfulness at the model input: deletion / insertion AUC (and ROAD) with the detection's
  D-RISE similarity as the score (Petsiuk et al. 2021): the column of
  ``DetectionTarget.scores`` that is this detection, exactly as a class index picks a column
  of a classifier's probabilities;
* localisation in the image's pixels: pointing game and energy in the detection's own box;
* agreement with the reference map, per detection.

The result is a :class:`~.job.CompareResult` with one :class:`~.job.ImageResult` per
(image, detection) and one row per (image, detection, method), so the report
(:mod:`.report`) and its panels show each detection's maps side by side with its box.
An image with no detection is listed (``skipped``, with the reason), not failed. Detector maps
are not cached (:class:`~blackbox_cam.jobs.dataset.MapCache` keys classifier maps).

The work on one image is :func:`compare_detector_unit`, a unit of the shared executor
(:mod:`blackbox_cam.jobs.executors`): in this process, or on a Ray worker that holds its own
:class:`~blackbox_cam.model.detector.Detector`; the driver alone builds the rows and writes, in
input order, so a Ray run writes what a serial run writes.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ... import metrics
from ...errors import BlackboxCamError
from ...explainer.detection_maps import (choose_targets, explain_detections, in_file_pixels, no_detection_message,
                                         score_detections)
from ...explainer.pipeline import map_to_image
from ...methods import bind_all, parse_methods
from ...metrics.detection import detection_deletion, detection_insertion
from ..dataset import Item, MapRequest, expand_inputs
from ..executors import Failed, ImageSource, LocalExecutor, item_tasks
from .job import CompareResult, ImageResult, MetricSettings, _message, _row, choose_reference


def score_detection_map(det: Any, scored: Any, targets: Any, column: int, saliency: np.ndarray,
                        settings: MetricSettings) -> dict[str, float]:
    """Deletion / insertion AUC (and ROAD with ``settings.road``) of one detection's
    model-resolution map, the score being column ``column`` of ``targets.scores`` (that
    detection's D-RISE similarity); the letterbox padding is kept as the methods keep it."""
    def score_fn(batch: np.ndarray) -> np.ndarray:
        return targets.scores(det, batch)

    keep = getattr(det, "padding_kept", None)
    with keep(scored.x, scored.image.shape[:2]) if keep is not None else contextlib.nullcontext():
        out = {"deletion_auc": detection_deletion(score_fn, scored.x, saliency, column, step=settings.step,
                                                  seed=settings.seed).auc,
               "insertion_auc": detection_insertion(score_fn, scored.x, saliency, column, step=settings.step,
                                                    seed=settings.seed).auc}
        if settings.road:
            r = metrics.road(score_fn, scored.x, saliency, column, seed=settings.seed)
            out.update(road=r.combined, road_morf=r.morf, road_lerf=r.lerf)
    return out


def compare_detector_unit(det: Any, source: ImageSource, requests: Sequence[MapRequest],
                          target: str | int | None, detection: int | None, seed: int,
                          settings: MetricSettings) -> dict[str, Any] | Failed:
    """One image's work for ``compare`` on a detector, the same in this process and on a Ray
    worker (:mod:`blackbox_cam.jobs.executors`): ask the detector once, choose the detections,
    explain them all with each request from one query set and score each detection's map
    (:func:`score_detection_map`).

    Returns :class:`Failed` when the image cannot be read or its detections chosen, else
    ``{"image", "size", "chosen": [(class, box, detection), ...], "methods": {name: Failed |
    [(result, scores | one-line error), ...]}}`` (``"none"``: the line for an image with no
    detection to explain). Everything in it is picklable; the driver builds the rows."""
    try:
        image, size = source.read()
        scored = score_detections(det, image)
        chosen = choose_targets(det, scored, target=target, detection=detection)
    except Exception as e:  # a bad image is recorded by the driver; the others go on
        return Failed(_message(e))
    out: dict[str, Any] = {"image": scored.image, "size": size, "methods": {}}
    if chosen.count == 0:
        out["none"] = no_detection_message(det, scored, target)
        return out
    out["chosen"] = [(int(chosen.classes[k]), tuple(float(v) for v in chosen.image_boxes[k]),
                      int(chosen.detections[k])) for k in range(chosen.count)]
    for req in requests:
        try:
            found = explain_detections(det, scored, req.call(), chosen, seed=seed)
        except Exception as e:  # one method failing must not lose the others
            out["methods"][req.method] = Failed(_message(e))
            continue
        per: list[tuple[Any, Any]] = []
        for k, res in enumerate(found):
            try:
                work = np.asarray(res.explanation.saliency, np.float32)
                if work.shape != scored.x.shape[1:]:  # a preprocess_fn's x is the image
                    work = np.clip(map_to_image(det, work, scored.image.shape[:2], model_space=True),
                                   0.0, 1.0).astype(np.float32)
                per.append((res, score_detection_map(det, scored, chosen, k, work, settings)))
            except Exception as e:
                per.append((res, _message(e)))
        out["methods"][req.method] = per
    return out


def compare_detections(det: Any, images: Sequence[Any], methods: Sequence[str], *,
                       target: str | int | None = None, detection: int | None = None, budget: int | None = None,
                       seed: int = 0, reference: str | None = None, settings: MetricSettings | None = None,
                       options: Mapping[str, Any] | None = None, progress: Callable[[str], None] | None = None,
                       on_image: Callable[[Any], None] | None = None, executor: Any = None) -> CompareResult:
    """:func:`~.job.compare_images` for a detector ``det``: one row per (image, detection, method).

    ``target`` keeps the detections of one class (name or index), ``detection`` one detection
    by index (as ``explain --detection``); the detector's own ``conf``/``iou``/``max_detections``
    select them. Rows carry ``detection`` (index among the image's detections), ``box``
    (``[x0, y0, x1, y1]`` in the file's pixels), ``label`` and ``class``; ``target_probability``
    is the detection's score as the detector reported it.

    ``executor``: where each image's work (:func:`compare_detector_unit`) runs
    (:mod:`blackbox_cam.jobs.executors`; in this process when None, or on Ray workers); results
    are consumed in input order, so the rows, failures and files are the same either way."""
    methods = parse_methods(list(methods))
    calls = bind_all(methods, budget, options, clf=det)
    ref = choose_reference(methods, reference)
    settings = settings or MetricSettings(seed=seed)
    say = progress or (lambda _msg: None)
    items = [i for i in images if isinstance(i, Item)]
    if len(items) != len(images):
        items = expand_inputs(images)
    executor = executor or LocalExecutor(det)
    requests = tuple(MapRequest.of(calls[m]) for m in methods)
    model = str(det.path) if getattr(det, "path", None) is not None else None
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    results: list[ImageResult] = []
    skipped: list[dict[str, str]] = []

    tasks = item_tasks(items, executor, compare_detector_unit, requests, target, detection, seed, settings)
    for item, value in executor.imap(tasks):
        if item.skip:
            skipped.append({"image": item.name, "reason": item.error or ""})
            say(item.error or f"{item.name}: skipped")
            continue
        name = item.name
        if isinstance(value, Failed):  # a bad image is recorded; the others go on
            failures.append({"image": name, "method": "", "error": value.error})
            say(f"{name}: failed ({value.error})")
            if on_image is not None:
                on_image(item)
            continue
        if "none" in value:
            skipped.append({"image": name, "reason": value["none"]})
            say(f"{name}: {value['none']}")
            if on_image is not None:
                on_image(item)
            continue
        image, size = value["image"], value["size"]
        stem = item.path.stem if item.origin == "arg" else item.stem()
        per_det = [ImageResult(name, str(item.path), image, cls, det.label(cls), box=box, size=size, stem=stem,
                               detection=k) for cls, box, k in value["chosen"]]
        results.extend(per_det)
        sy, sx = size[0] / image.shape[0], size[1] / image.shape[1]
        for m in methods:
            found = value["methods"][m]
            if isinstance(found, Failed):  # one method failing must not lose the others
                failures.append({"image": name, "method": m, "error": found.error})
                say(f"{name} / {m}: failed ({found.error})")
                continue
            for ir, (res, scores) in zip(per_det, found):
                res.model = model   # a Ray worker's result names its private copy of the model file
                if isinstance(scores, str):
                    failures.append({"image": name, "method": m, "error": f"detection {ir.detection}: {scores}"})
                    continue
                # _row adds pointing game and energy in ir.box (the detection's box, working pixels)
                row = _row(ir, res, scores, settings, in_image=getattr(det, "preprocess_fn", None) is not None)
                row = {"image": name, "detection": ir.detection, "box": [round(v, 2) for v in
                       (ir.box[0] * sx, ir.box[1] * sy, ir.box[2] * sx, ir.box[3] * sy)],
                       "class": ir.target, **row}
                rows.append(row)
                in_file_pixels([res], size)  # --save-maps records the box in the file's pixels, as explain does
                say(f"{name} / det{ir.detection} {ir.label} / {m}: deletion {row['deletion_auc']:.3f}, insertion "
                    f"{row['insertion_auc']:.3f}, energy in box {row['energy_in_box']:.2f}")
        for ir in per_det:
            if ref is None or ref not in ir.model_maps:
                continue
            for row in rows:
                if row["image"] == name and row["detection"] == ir.detection and row["method"] in ir.model_maps:
                    a, b = ir.model_maps[row["method"]], ir.model_maps[ref]
                    row[f"spearman_vs_{ref}"] = metrics.spearman(a, b)
                    row[f"iou_vs_{ref}"] = metrics.topk_iou(a, b, settings.topk, seed=settings.seed)
        if on_image is not None:
            on_image(item)
    setts = {"methods": list(methods), "reference": ref, "target": "all" if target is None else str(target),
             "detection": detection, "budget": budget, "seed": seed, "road": settings.road,
             "tolerance": settings.tolerance, "topk": settings.topk, "model": str(getattr(det, "path", "")),
             "input_size": list(getattr(det, "input_size", ())), "num_classes": getattr(det, "num_classes", None),
             "boxes": True, "task": "detector", "conf": getattr(det, "conf", None), "iou": getattr(det, "iou", None),
             "score": "D-RISE similarity to the detection (Petsiuk et al. 2021)"}
    if getattr(det, "session", None) is not None and hasattr(det.session, "record"):
        setts["backend"] = det.session.record()
    return CompareResult(rows, failures, results, list(methods), ref, setts, skipped)


def check_detector_options(det: Any, *, boxes: Any = None) -> None:
    """Options of ``compare`` that a detector refuses, as one line."""
    if boxes is not None:
        raise BlackboxCamError("--boxes applies to classifiers: on a detector each map is scored against its own "
                               "detection's box")
