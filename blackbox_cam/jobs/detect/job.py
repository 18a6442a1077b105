"""``detect`` over many images: one record and one overlay per image, resumable, here or on Ray.

The work on one image is :func:`blackbox_cam.explainer.detections.detect_image`; :func:`detect_unit`
wraps it as a *unit* of the shared executor (:mod:`blackbox_cam.jobs.executors`): it reads the
image, detects, and returns what the driver writes (the lines, the record's detections, the
overlay's PNG bytes), so a Ray worker, which holds its own
:class:`~blackbox_cam.model.detector.Detector` built from the model's bytes, computes exactly what
the driver would. :func:`run` commits each result to ``detections.json`` through the same
:class:`~blackbox_cam.io.output.RecordBook` as ``explain`` (atomic, merged across runs, Ctrl-C
safe), in the order of the items whatever ran them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...explainer.detections import detect_image
from ...io.output import png_bytes
from ..dataset import file_digest
from ..executors import Failed, ImageSource, LocalExecutor, Ready, Work, message, named


def settings(detector, model: str, conf: float, iou: float, max_detections: int) -> dict[str, Any]:
    """What a ``detections.json`` record depends on besides the image: a record whose settings
    and image digest match is reused by a later run instead of asking the model again."""
    return {"model": model, "model_digest": file_digest(model), "conf": conf, "iou": iou,
            "max_detections": max_detections, "pipeline": f"{detector.geometry.describe()}; "
                                                          f"{detector.preprocessing.describe()}"}


def detect_unit(detector, source: ImageSource, conf: float, iou: float, max_detections: int,
                stem: str | None = None) -> dict[str, Any] | Failed:
    """One image through ``detector``: ``{"lines", "detections", "size", "png"}`` (the printed lines,
    the record's ``detections``, the file's (H, W), the overlay's PNG bytes), or :class:`Failed`
    with one line. Never raises for a bad image: the batch goes on."""
    try:
        image, size = source.read()
        res = detect_image(detector, image, image_size=size, conf=conf, iou=iou, max_detections=max_detections,
                           source=source.name, stem=stem)
        return {"lines": res.lines(), "detections": res.record(), "size": [int(v) for v in size],
                "png": png_bytes(res.overlay())}
    except Exception as e:  # recorded by the driver as this image's error
        return Failed(message(e))


@dataclass
class DetectRun:
    """What :func:`run` did: images detected now (``made``), taken from an earlier run's records
    (``recorded``), failed, and non-image files skipped (for the run's summary line)."""

    made: int = 0
    recorded: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def images(self) -> int:
        """The images of the run (the skipped non-image files aside)."""
        return self.made + self.recorded + self.failed


def run(detector, items, book, *, model: str, conf: float, iou: float, max_detections: int,
        echo=print, warn=print, executor: Any = None) -> DetectRun:
    """``detect`` over ``items`` (:func:`blackbox_cam.jobs.dataset.expand_inputs`), each committed
    to ``book`` (a :class:`~blackbox_cam.io.output.RecordBook` on ``detections.json``) with its
    overlay PNG; an image already recorded with the same settings and file digest is reused.
    ``executor``: where the units run (:class:`~blackbox_cam.jobs.executors.LocalExecutor` when
    None, or a Ray executor; the same records and files either way). ``echo`` gets one line per
    detection, ``warn`` the errors. Returns the counts (:class:`DetectRun`)."""
    executor = executor or LocalExecutor(detector)
    base = settings(detector, model, conf, iou, max_detections)
    done = {(r.get("image"), r.get("digest")): r for r in book.records() if r.get("method") == "detect"}

    def tasks():
        for item in items:
            if item.skip:
                yield (item, None), Ready(None)
                continue
            try:
                digest = item.digest()
            except Exception as e:  # an unreadable file: recorded like any other failure
                yield (item, None), Ready(Failed(message(e)))
                continue
            old = done.get((str(item.path), digest))
            if old is not None and all(old.get(k) == v for k, v in base.items()) and "detections" in old:
                yield (item, digest), Ready(old)
                continue
            stem = item.path.stem if item.origin == "arg" else item.stem()
            src = ImageSource.of(str(item.path), item.path, remote=executor.remote)
            yield (item, digest), Work(detect_unit, (src, conf, iou, max_detections, stem), str(item.path))

    counts = DetectRun()
    for (item, digest), value in executor.imap(tasks()):
        if item.skip:
            warn(item.error)
            book.commit({**base, "image": str(item.path), "method": None, "skipped": item.error})
            counts.skipped += 1
            continue
        if isinstance(value, Failed):  # one bad image is recorded and the batch goes on
            e = value.error
            warn(f"error: {named(item.path, e)}")
            book.commit({**base, "image": str(item.path), "method": "detect", "error": e})
            counts.failed += 1
            continue
        if "lines" not in value:  # recorded by an earlier run with the same settings and file
            for d in value["detections"]:
                echo(f"{item.path}: {d['label']} {d['score']:.3f} [" + ", ".join(f"{v:.1f}" for v in d["box"])
                     + "] (recorded)")
            counts.recorded += 1
            continue
        for line in value["lines"]:
            echo(line)
        rec = {**base, "image": str(item.path), "method": "detect", "digest": digest,
               "image_size": value["size"], "backend": detector.session.record(),
               "detections": value["detections"]}
        book.commit(rec, {"png": value["png"]}, stem=item.path.stem if item.origin == "arg" else item.stem())
        counts.made += 1
    return counts
