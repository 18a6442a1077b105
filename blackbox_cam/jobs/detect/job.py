"""``detect`` over many images: one record and one overlay per image, resumable.

The work on one image is :func:`blackbox_cam.explainer.detections.detect_image`; this module runs it
over a dataset's items and commits each result to ``detections.json`` through the same
:class:`~blackbox_cam.io.output.RecordBook` as ``explain`` (atomic, merged across runs, Ctrl-C safe).
"""
from __future__ import annotations

from typing import Any

from ...errors import BlackboxCamError
from ...explainer.detections import detect_image
from ...io.output import png_bytes
from ..dataset import file_digest


def settings(detector, model: str, conf: float, iou: float, max_detections: int) -> dict[str, Any]:
    """What a ``detections.json`` record depends on besides the image: a record whose settings
    and image digest match is reused by a later run instead of asking the model again."""
    return {"model": model, "model_digest": file_digest(model), "conf": conf, "iou": iou,
            "max_detections": max_detections, "pipeline": f"{detector.geometry.describe()}; "
                                                          f"{detector.preprocessing.describe()}"}


def run(detector, items, book, *, model: str, conf: float, iou: float, max_detections: int,
        echo=print, warn=print) -> int:
    """``detect`` over ``items`` (:func:`blackbox_cam.jobs.dataset.expand_inputs`), each committed
    to ``book`` (a :class:`~blackbox_cam.io.output.RecordBook` on ``detections.json``) with its
    overlay PNG; an image already recorded with the same settings and file digest is reused.
    ``echo`` gets one line per detection, ``warn`` the errors. Returns the number of failed images."""
    base = settings(detector, model, conf, iou, max_detections)
    done = {(r.get("image"), r.get("digest")): r for r in book.records() if r.get("method") == "detect"}
    failed = 0
    for item in items:
        if item.skip:
            warn(item.error)
            book.commit({**base, "image": str(item.path), "method": None, "skipped": item.error})
            continue
        try:
            digest = item.digest()
            old = done.get((str(item.path), digest))
            if old is not None and all(old.get(k) == v for k, v in base.items()) and "detections" in old:
                for d in old["detections"]:
                    echo(f"{item.path}: {d['label']} {d['score']:.3f} [" + ", ".join(f"{v:.1f}" for v in d["box"])
                         + "] (recorded)")
                continue
            image, size = item.read()
            res = detect_image(detector, image, image_size=size, conf=conf, iou=iou, max_detections=max_detections,
                               source=str(item.path), stem=item.stem())
        except BlackboxCamError as e:  # one bad image is recorded and the batch goes on
            warn(f"error: {e}" if str(e).startswith(str(item.path)) else f"error: {item.path}: {e}")
            book.commit({**base, "image": str(item.path), "method": "detect", "error": str(e)})
            failed += 1
            continue
        for line in res.lines():
            echo(line)
        rec = {**base, "image": str(item.path), "method": "detect", "digest": digest,
               "image_size": [int(v) for v in size], "backend": detector.session.record(),
               "detections": res.record()}
        book.commit(rec, {"png": png_bytes(res.overlay())}, stem=item.path.stem if item.origin == "arg" else item.stem())
    return failed
