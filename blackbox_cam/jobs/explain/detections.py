"""``blackbox-cam explain`` on a detector: images in, one map per detection out.

For every image: ask the detector once (:func:`~blackbox_cam.explainer.detection_maps.score_detections`),
choose the detections (``--target``, ``--detection``, ``--max-detections``, or a ``--box`` the model
did not report), explain all of them with each method from one query set
(:func:`~blackbox_cam.explainer.detection_maps.explain_detections`) and commit one record and one
``<stem>_<method>_det<K>.npy/.png`` (``_box`` for a ``--box``) per detection to ``explain.json``.
An image with no detection gets one line and a record saying so (``"detections": 0`` and a
``warning``); an image whose ``--detection`` or ``--box`` does not fit it is recorded with its
error and the others go on. Detector maps are not cached (``MapCache`` keys classifier maps).

The work on one image is :func:`detector_unit`, a unit of the shared executor
(:mod:`blackbox_cam.jobs.executors`): in this process, or on a Ray worker that holds its own
:class:`~blackbox_cam.model.detector.Detector`; the driver alone writes, in input order.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ...errors import BlackboxCamError
from ...explainer.detection_maps import (choose_targets, explain_detections, in_file_pixels, no_detection_message,
                                    score_detections)
from ...explainer.records import commit_result, result_record
from ...methods import Call
from ..dataset import MapRequest
from ..executors import Failed, ImageSource, LocalExecutor, item_tasks, named


def detector_unit(det, source: ImageSource, requests: Sequence[MapRequest], target: str | int | None,
                  detection: int | None, box: Any, seed: int, progress: Callable[..., Any] | None = None
                  ) -> dict[str, Any] | Failed:
    """One image's detections explained by every request from one query set each:
    ``{"size", "count", "methods": {name: (results, seconds) | Failed}}`` (``"none"``: the line
    for an image with no detection to explain), or :class:`Failed` when the image or its targets
    do not fit. ``progress`` (in-process only) makes one bar per method."""
    try:
        image, size = source.read()
        scored = score_detections(det, image)
        chosen = choose_targets(det, scored, target=target, detection=detection, box=box)
    except BlackboxCamError as e:
        return Failed(str(e))
    out: dict[str, Any] = {"size": size, "count": len(scored), "methods": {}}
    if chosen.count == 0:
        out["none"] = no_detection_message(det, scored, target)
        return out
    for req in requests:
        t0 = time.perf_counter()
        bar = progress(req.budget, f"{source.name} {req.method}") if progress else None
        if bar is not None:
            det.on_queries = bar.update
        try:
            results = explain_detections(det, scored, req.call(), chosen, seed=seed)
        except BlackboxCamError as e:
            out["methods"][req.method] = Failed(str(e))
            continue
        finally:
            if bar is not None:
                bar.close()
                det.on_queries = None
        in_file_pixels(results, size)
        out["methods"][req.method] = (results, round(time.perf_counter() - t0, 3))
    return out


@dataclass
class DetectorRun:
    """What :func:`explain_detector_items` did, for the run's summary line: images explained or
    failed, maps written (one per detection and method), failures (an image, or one method on
    it), non-image files skipped."""

    images: int = 0
    maps: int = 0
    failed: int = 0
    skipped: int = 0


def explain_detector_items(det, items: Sequence[Any], calls: Mapping[str, Call], book, *, model: str,
                           target: str | int | None = None, detection: int | None = None, box: Any = None,
                           seed: int = 0, show_uncertainty: bool = False, echo: Callable[[str], None] = print,
                           warn: Callable[[str], None] = print, progress: Callable[..., Any] | None = None,
                           executor: Any = None) -> DetectorRun:
    """Explain ``items`` (:func:`blackbox_cam.jobs.dataset.expand_inputs`) with every method of
    ``calls``; records go to ``book`` (a :class:`~blackbox_cam.io.output.RecordBook`). ``executor``:
    where the units run (in this process when None, or a Ray executor; the same files either
    way). Returns the counts (:class:`DetectorRun`; ``failed``: failed images and methods)."""
    executor = executor or LocalExecutor(det)
    methods = list(calls)
    requests = tuple(MapRequest.of(calls[n]) for n in methods)
    bars = None if executor.remote else progress

    run = DetectorRun()
    tasks = item_tasks(items, executor, detector_unit, requests, target, detection, box, seed, bars)
    for item, value in executor.imap(tasks):
        base = {"model": model, "image": str(item.path)}
        if item.skip:
            warn(item.error)
            book.commit({**base, "method": None, "skipped": item.error})
            run.skipped += 1
            continue
        run.images += 1
        if isinstance(value, Failed):
            e = value.error
            warn(f"error: {named(item.path, e)}")
            for m in methods:
                book.commit({**base, "method": m, "error": e})
            run.failed += 1
            continue
        if "none" in value:
            warn(f"warning: {item.name}: {value['none']}")
            for m in methods:
                book.commit({**base, "method": m, "detections": 0, "warning": value["none"],
                             "backend": det.session.record()})
            continue
        stem = item.path.stem if item.origin == "arg" else item.stem()
        size = value["size"]
        for name in methods:
            got = value["methods"][name]
            if isinstance(got, Failed):
                warn(f"error: {item.path}: {got.error}")
                book.commit({**base, "method": name, "error": got.error})
                run.failed += 1
                continue
            results, seconds = got
            for res in results:
                rec = result_record(res, image=str(item.path), model=model, cached=False, image_size=size,
                                    seconds=seconds)
                rec["detections"] = value["count"]
                if res.explanation.warning:
                    warn(f"warning: {item.name} {res.box_caption()}: {res.explanation.warning}")
                commit_result(book, rec, res, stem=stem, show_uncertainty=show_uncertainty)
                run.maps += 1
                echo(f"{item.name} {name}: {res.box_caption()} [" + ", ".join(f"{v:.1f}" for v in res.box)
                     + f"], similarity {res.score:.3f}, {res.explanation.queries} queries (shared by "
                     f"{len(results)}), {seconds:.1f}s -> {book.path.parent / rec['png']}")
    return run

