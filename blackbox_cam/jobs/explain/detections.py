"""``blackbox-cam explain`` on a detector: images in, one map per detection out.

For every image: ask the detector once (:func:`~blackbox_cam.explainer.detection_maps.score_detections`),
choose the detections (``--target``, ``--detection``, ``--max-detections``, or a ``--box`` the model
did not report), explain all of them with each method from one query set
(:func:`~blackbox_cam.explainer.detection_maps.explain_detections`) and commit one record and one
``<stem>_<method>_det<K>.npy/.png`` (``_box`` for a ``--box``) per detection to ``explain.json``.
An image with no detection gets one line and a record saying so (``"detections": 0`` and a
``warning``); an image whose ``--detection`` or ``--box`` does not fit it is recorded with its
error and the others go on. Detector maps are not cached (``MapCache`` keys classifier maps).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from ...errors import BlackboxCamError
from ...explainer.detection_maps import (choose_targets, explain_detections, in_file_pixels, no_detection_message,
                                    score_detections)
from ...explainer.records import commit_result, result_record
from ...methods import Call


def explain_detector_items(det, items: Sequence[Any], calls: Mapping[str, Call], book, *, model: str,
                           target: str | int | None = None, detection: int | None = None, box: Any = None,
                           seed: int = 0, show_uncertainty: bool = False, echo: Callable[[str], None] = print,
                           warn: Callable[[str], None] = print, progress: Callable[..., Any] | None = None) -> int:
    """Explain ``items`` (:func:`blackbox_cam.jobs.dataset.expand_inputs`) with every method of
    ``calls``; records go to ``book`` (a :class:`~blackbox_cam.io.output.RecordBook`). Returns the
    number of failed images."""
    failed = 0
    methods = list(calls)
    for item in items:
        base = {"model": model, "image": str(item.path)}
        if item.skip:
            warn(item.error)
            book.commit({**base, "method": None, "skipped": item.error})
            continue
        try:
            image, size = item.read()
            scored = score_detections(det, image)
            chosen = choose_targets(det, scored, target=target, detection=detection, box=box)
        except BlackboxCamError as e:
            warn(f"error: {e}" if str(e).startswith(str(item.path)) else f"error: {item.path}: {e}")
            for m in methods:
                book.commit({**base, "method": m, "error": str(e)})
            failed += 1
            continue
        if chosen.count == 0:
            line = no_detection_message(det, scored, target)
            warn(f"warning: {item.name}: {line}")
            for m in methods:
                book.commit({**base, "method": m, "detections": 0, "warning": line, "backend": det.session.record()})
            continue
        stem = item.path.stem if item.origin == "arg" else item.stem()
        for name in methods:
            t0 = time.perf_counter()
            bar = progress(calls[name].budget, f"{item.name} {name}") if progress else None
            if bar is not None:
                det.on_queries = bar.update
            try:
                results = explain_detections(det, scored, calls[name], chosen, seed=seed)
            except BlackboxCamError as e:
                warn(f"error: {item.path}: {e}")
                book.commit({**base, "method": name, "error": str(e)})
                failed += 1
                continue
            finally:
                if bar is not None:
                    bar.close()
                    det.on_queries = None
            seconds = round(time.perf_counter() - t0, 3)
            in_file_pixels(results, size)
            for res in results:
                rec = result_record(res, image=str(item.path), model=model, cached=False, image_size=size,
                                    seconds=seconds)
                rec["detections"] = len(scored)
                if res.explanation.warning:
                    warn(f"warning: {item.name} {res.box_caption()}: {res.explanation.warning}")
                commit_result(book, rec, res, stem=stem, show_uncertainty=show_uncertainty)
                echo(f"{item.name} {name}: {res.box_caption()} [" + ", ".join(f"{v:.1f}" for v in res.box)
                     + f"], similarity {res.score:.3f}, {res.explanation.queries} queries (shared by "
                     f"{len(results)}), {seconds:.1f}s -> {book.path.parent / rec['png']}")
    return failed
