"""The files and ``explain.json`` record of an explained image, written by one writer.

``blackbox-cam explain``, :meth:`blackbox_cam.explainer.pipeline.Result.save` and ``blackbox-cam compare
--save-maps`` all write an explained image the same way: ``<stem>_<method>.npy`` (float32 map at
the image's size, values in [0, 1]), ``<stem>_<method>.png`` (the jet overlay,
:meth:`~blackbox_cam.explainer.pipeline.Result.overlay`) and one record in ``explain.json``, merged across
runs under a lock by :class:`blackbox_cam.io.output.RecordBook` (which also picks the stem).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import BlackboxCamError
from ..io.output import RecordBook, ensure_dir, npy_bytes, png_bytes


def result_record(res, *, image: str, model: str | None = None, seconds: float | None = None,
                  cached: bool | None = None, image_size: Sequence[int] | None = None) -> dict[str, Any]:
    """The ``explain.json`` record of a :class:`~blackbox_cam.explainer.pipeline.Result` (README, "Explain").

    ``image`` is the path as given; ``model`` defaults to the result's model file; ``seconds``
    to the method's own time; ``cached`` to whether the result came from a map cache;
    ``image_size`` (the file's ``(H, W)``) to the result's, else the map's size.

    A detection's record adds ``box`` (x0, y0, x1, y1 in the image's pixels), ``class``,
    ``detection`` (its index among the image's detections; ``null`` with ``"reported": false``
    for a ``--box`` the model did not report), ``score`` (the detector's score of it; for a
    ``--box``, its similarity) and ``similarity`` (its D-RISE similarity on the unmasked image,
    what the map explains); ``label`` is its class name.
    """
    ex = res.explanation
    rec: dict[str, Any] = {"model": model if model is not None else res.model, "image": image,
                           "method": ex.method, "backend": res.backend}
    rec.update({"predicted": res.predicted, "predicted_label": res.predicted_label,
                "predicted_score": res.predicted_score, "label": res.label, "score": res.score,
                "target": res.target, "params": ex.params, "queries": ex.queries,
                "seconds": ex.seconds if seconds is None else seconds,
                "cached": res.cached if cached is None else cached,
                "image_size": list(image_size or res.image_size or res.saliency.shape),
                "map_size": list(res.saliency.shape)})
    if res.box is not None:  # a detection (issue 27): its box in the image's pixels, index and detector score
        rec.update({"box": [round(float(v), 3) for v in res.box], "class": res.target, "detection": res.detection,
                    "score": res.confidence if res.confidence is not None else res.score,
                    "similarity": res.score})
        if res.detection is None:
            rec["reported"] = False
    if "search" in ex.extra:  # DE-CAM: population, generations, best fitness per generation
        rec["search"] = ex.extra["search"]
    if getattr(res, "pipeline", None):  # vendor functions with their SHA-256, and --score
        rec["pipeline"] = res.pipeline
    if ex.warning:  # a map with no information (constant / all zero) is written, and said to be one
        rec["warning"] = ex.warning
    if ex.uncertainty is not None:  # how sure the map is, and why --budget auto stopped
        rec["uncertainty"] = ex.uncertainty
    return rec


def commit_result(book: RecordBook, record: dict[str, Any], res, stem: str, *,
                  show_uncertainty: bool = False) -> dict[str, Any]:
    """Write the result's ``.npy``, its standard errors ``_se.npy`` (black-box methods) and its
    ``.png`` (greyed where the map is not significant with ``show_uncertainty``) and its
    ``record`` together (one locked commit)."""
    files = {"npy": npy_bytes(res.saliency)}
    if res.se is not None:
        files["_se.npy"] = npy_bytes(res.se)
    files["png"] = png_bytes(res.overlay(uncertainty=show_uncertainty))
    return book.commit(record, files, stem=stem)


def save_results(results: Sequence[Any], out_dir: str | os.PathLike,
                 names: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
    """Write each result as ``explain`` does into ``out_dir``; ``names`` name in-memory images
    (results without a ``source``). Returns the records written."""
    names = list(names) if names is not None else [None] * len(results)
    written = []
    with RecordBook(ensure_dir(out_dir) / "explain.json") as book:
        for res, name in zip(results, names):
            image = name or res.source
            if not image:
                raise BlackboxCamError("this result's image has no file name; give one: "
                                       "result.save(folder, name='cat')")
            rec = result_record(res, image=str(image), seconds=round(float(res.explanation.seconds), 3))
            written.append(commit_result(book, rec, res,
                                         stem=res.stem if res.stem and not name else Path(str(image)).stem))
    return written
