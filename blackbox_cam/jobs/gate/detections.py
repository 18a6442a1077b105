"""The evidence gate on a detector: each detection's evidence inside its own box, or outside forbidden regions.

A detection is one more kind of target, so the gate's rule (:func:`.job.check_map`) applies
unchanged to each detection's map (:mod:`blackbox_cam.explainer.detection_maps`: one query set
per image and method explains all its detections); only the regions change:

* **required**: the detection's own box grown by ``box_margin`` (:func:`grown_box`: width and
  height times ``1 + box_margin`` about its centre, clipped to the image; 0.5 is the box "grown
  by 50 %" OpenVINO XAI's ``AISEDetection`` searches in), united with any ``--require``
  regions; the case fails if the share of the map's positive mass inside it is below
  ``min_share`` (the rule's required share, Borg et al. 2021's share with the detection's box as
  the valid pixels);
* **forbidden**: the ``--forbid`` regions, as for a classifier (share above ``max_share``, or
  the map's maximum inside).

The evidence is the map's positive mass (Borg et al.'s share), or with ``top_k`` the map's
``top_k`` % highest pixels (:func:`top_region`): the rule then runs on that region as a 0/1 map,
so a share is the fraction of those pixels inside a region, and a case fails the peak rule when
any of them lies in a forbidden region (a stricter reading of "its strongest evidence").

Each (image, detection, method) is one :class:`~.job.GateCase` (``detection`` and ``box`` set),
so ``gate.json`` and the JUnit report have one test case per detection. An image with no
detection is one case with its error (the gate must not pass what it did not see).

Each image's maps are made by :func:`gate_detector_unit`, a unit of the shared executor
(:mod:`blackbox_cam.jobs.executors`): in this process, or on a Ray worker that holds its own
:class:`~blackbox_cam.model.detector.Detector`; the driver applies the rule and writes, in
input order, so a Ray run writes what a serial run writes (but the times).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import BlackboxCamError
from ...explainer.detection_maps import choose_targets, explain_detections, no_detection_message, score_detections
from ...methods import bind_all
from ..dataset import MapRequest
from ..executors import Failed, ImageSource, LocalExecutor, item_tasks
from .job import GateCase, GateReport, GateRule, as_items, check_inputs, check_map, item_name
from .regions import Region, check_regions, union


def check_margin(box_margin: float | None) -> float | None:
    """One line for a margin that is not a finite share >= 0."""
    if box_margin is None:
        return None
    if isinstance(box_margin, bool) or not isinstance(box_margin, (int, float)) or not np.isfinite(box_margin) \
            or box_margin < 0:
        raise BlackboxCamError(f"--box-margin {box_margin!r} must be a share >= 0 of the box's size (0 = the box "
                               "itself, 0.5 = width and height 1.5 times)")
    return float(box_margin)


def top_region(saliency: np.ndarray, top_k: float) -> np.ndarray:
    """The map's ``top_k`` % highest pixels as a 0/1 float map (ties at the threshold included;
    an all-equal map gives all ones, which the rule reads as no preference)."""
    s = np.asarray(saliency, np.float64)
    thr = np.quantile(s, 1.0 - top_k / 100.0)
    return (s >= thr).astype(np.float32)


def check_top_k(top_k: float | None) -> float | None:
    """One line for a top-k percentage outside (0, 100]."""
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, (int, float)) or not 0.0 < float(top_k) <= 100.0:
        raise BlackboxCamError(f"--top-k {top_k!r} must be a percentage in (0, 100] of the map's pixels (e.g. 10)")
    return float(top_k)


def grown_box(box: Sequence[float], margin: float, shape: tuple[int, int]) -> np.ndarray:
    """``bool (H, W)``: ``box`` (x0, y0, x1, y1 in the map's pixels) with width and height times
    ``1 + margin`` about its centre, clipped to the image of ``shape``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = (x1 - x0) * margin / 2, (y1 - y0) * margin / 2
    h, w = shape
    c0, r0 = max(0, int(np.floor(x0 - dx))), max(0, int(np.floor(y0 - dy)))
    c1, r1 = min(w, int(np.ceil(x1 + dx))), min(h, int(np.ceil(y1 + dy)))
    m = np.zeros((h, w), bool)
    m[r0:r1, c0:c1] = True
    return m


def gate_detector_unit(det: Any, source: ImageSource, requests: Sequence[MapRequest], regions: Sequence[Region],
                       target: str | int | None, detection: int | None, seed: int) -> dict[str, Any] | Failed:
    """One image's maps for the gate on a detector, the same in this process and on a Ray worker
    (:mod:`blackbox_cam.jobs.executors`): read it, check that ``regions`` fit it (before any
    query), ask the detector once, choose the detections and explain them all with each request
    from one query set.

    Returns :class:`Failed` (the image's one line: unreadable, a region that does not fit, no
    detection) or ``{"image", "size", "methods": {name: [Result, ...] | Failed}}``; the driver
    applies the rule to each detection's map."""
    try:
        image, size = source.read()
        check_regions(list(regions), size, source.name)
        scored = score_detections(det, image)
        chosen = choose_targets(det, scored, target=target, detection=detection)
        if chosen.count == 0:
            raise BlackboxCamError(no_detection_message(det, scored, target))
    except BlackboxCamError as e:
        return Failed(str(e))
    out: dict[str, Any] = {"image": image, "size": size, "methods": {}}
    for req in requests:
        try:
            out["methods"][req.method] = explain_detections(det, scored, req.call(), chosen, seed=seed)
        except BlackboxCamError as e:
            out["methods"][req.method] = Failed(str(e))
    return out


def _source(item: Any, remote: bool) -> ImageSource:
    """What :func:`gate_detector_unit` reads: a file (its bytes for a remote executor) or an
    in-memory image (:class:`~.job.ArrayImage`)."""
    if getattr(item, "path", None) is None:
        return ImageSource(item_name(item), image=np.asarray(item.array), size=tuple(item.array.shape[:2]))
    return ImageSource.of(item_name(item), item.path, remote=remote)


def run_gate_detections(det: Any, images: Any, methods: Sequence[str] = ("drise",), *,
                        forbid: Sequence[Region] = (), require: Sequence[Region] = (), rule: GateRule = GateRule(),
                        box_margin: float | None = 0.5, top_k: float | None = None, target: str | int | None = None,
                        detection: int | None = None, budget: int | None = None, seed: int = 0,
                        options: dict[str, Any] | None = None, on_case: Callable[..., Any] | None = None,
                        progress: Callable[[Any], None] | None = None, executor: Any = None) -> GateReport:
    """:func:`.job.run_gate` for a detector: one case per (image, detection, method).

    ``box_margin``: each detection's evidence must lie in its box grown by this share (None: no
    box rule, only ``forbid``/``require``); ``top_k``: the evidence is the map's top ``top_k`` %
    pixels instead of its positive mass. ``target``/``detection`` choose detections as
    ``explain`` does. ``executor``: where each image's maps are made (:func:`gate_detector_unit`;
    in this process when None, or on Ray workers); the cases come in input order either way.
    Raises :class:`BlackboxCamError` before any query for a usage error (no rule at all, a bad
    margin, a region that does not fit an image)."""
    box_margin = check_margin(box_margin)
    top_k = check_top_k(top_k)
    calls = bind_all(list(methods), budget, options or {}, clf=det)
    items = as_items(images)
    if box_margin is None:
        check_inputs(items, forbid, require)   # says "no region given" without any
    elif forbid or require:
        check_inputs(items, forbid, require)
    report = GateReport(str(getattr(det, "path", det)), list(methods), rule, [r.spec for r in forbid],
                        [r.spec for r in require] + ([f"own box grown by {box_margin:g}"]
                                                     if box_margin is not None else [])
                        + ([f"evidence: top {top_k:g}% pixels"] if top_k is not None else []))
    report.skipped = [{"image": item_name(it), "reason": it.error or ""} for it in items if getattr(it, "skip", False)]
    executor = executor or LocalExecutor(det)
    requests = tuple(MapRequest.of(calls[m]) for m in methods)
    regions = (*forbid, *require)

    t_run = time.perf_counter()
    tasks = item_tasks(items, executor, gate_detector_unit, requests, regions, target, detection, seed,
                       source=_source)
    for item, value in executor.imap(tasks):
        if value is None:   # a skipped file (README beside the pictures): listed in report.skipped
            continue
        name = item_name(item)
        if isinstance(value, Failed):
            report.cases.extend(GateCase(name, m, error=value.error) for m in methods)
            if progress is not None:
                progress(item)
            continue
        image, size = value["image"], value["size"]
        try:
            fmask = union(forbid, image.shape[:2], size)
            rmask = union(require, image.shape[:2], size)
        except BlackboxCamError as e:
            report.cases.extend(GateCase(name, m, error=str(e)) for m in methods)
            if progress is not None:
                progress(item)
            continue
        for m in methods:
            results = value["methods"][m]
            if isinstance(results, Failed):
                report.cases.append(GateCase(name, m, error=results.error))
                continue
            for res in results:
                need = rmask
                if box_margin is not None:
                    own = grown_box(res.box, box_margin, res.saliency.shape)
                    need = own if need is None else (need | own)
                case = GateCase(name, m, detection=res.detection, box=[round(v * k, 2) for v, k in zip(
                    res.box, (size[1] / image.shape[1], size[0] / image.shape[0]) * 2)])
                case.seconds = float(res.explanation.seconds)
                evidence = res.saliency if top_k is None else top_region(res.saliency, top_k)
                case.check = check_map(evidence, fmask, need, rule)
                case.predicted = case.target = res.target
                case.score = res.confidence if res.confidence is not None else res.score
                case.label = det.label(res.target)
                case.queries = res.explanation.queries
                report.cases.append(case)
                if on_case is not None:
                    on_case(case, item, image, res.saliency, fmask, need)
        if progress is not None:
            progress(item)
    report.seconds = time.perf_counter() - t_run
    return report
