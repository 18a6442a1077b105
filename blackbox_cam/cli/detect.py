"""``blackbox-cam detect``: a detector's boxes for images, printed, recorded and drawn."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..model.nms import CONF, IOU, MAX_DET
from .options import announce_backend, classifier_kwargs, model_options, ray_kwargs, ray_options, start_executor


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="INPUT...")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="detect-out",
              show_default=True, help="Folder for detections.json and one <stem>_detect.png overlay per image.")
@click.option("--conf", type=float, default=CONF, show_default=True,
              help="Keep detections whose score (class probability x objectness) is above this, in [0, 1].")
@click.option("--iou", type=float, default=IOU, show_default=True,
              help="NMS drops a box whose IoU with a better one of its class is above this, in [0, 1].")
@click.option("--max-detections", type=int, default=MAX_DET, show_default=True, help="At most this many per image.")
@ray_options
@model_options
def detect(model: Path, images: tuple[Path, ...], out_dir: Path, conf: float, iou: float, max_detections: int,
           **kw: Any) -> None:
    """Detect objects in the images in INPUT... with the detector MODEL.

    INPUT is an image file, a folder or a manifest CSV, as for `explain`. Prints one line per
    detection (image: label score [x0, y0, x1, y1] in the image's pixels) and writes
    OUT/detections.json (a list of {"image", "detections": [{"box", "label", "class", "score"}]},
    strict JSON, merged across runs by image) and OUT/<stem>_detect.png (boxes and labels drawn).
    Thresholds and NMS are Ultralytics' defaults (class-aware, --conf 0.25, --iou 0.45, 300 at
    most). An image already recorded with the same model, settings and file content is not run
    again. A failing image is recorded with its error and the others go on (exit 1). --ray runs
    the images as Ray tasks (a local runtime or a cluster) and writes the same files.

    \b
    Examples:
      blackbox-cam detect yolov8n.onnx street.jpg --out out/
      blackbox-cam detect yolov8n.onnx photos/ --ray --workers 4
    """
    from ..io.output import RecordBook, ensure_dir
    from ..jobs.dataset import expand_inputs
    from ..jobs.detect.job import run
    from ..jobs.executors import run_summary
    from ..model.detector import Detector, check_thresholds

    ray = ray_kwargs(kw)
    check_thresholds(conf, iou, max_detections)  # before the model is loaded or anything is written
    items = expand_inputs(images)
    ckw = classifier_kwargs(kw)
    det = Detector(model, conf=conf, iou=iou, max_detections=max_detections, **ckw)
    announce_backend(det)
    click.echo(f"model: {det.signature.task_reason}", err=True)
    executor = start_executor(det, ckw, ray)  # before anything is written: a bad --ray writes nothing
    t0 = time.perf_counter()
    with executor:
        out = ensure_dir(out_dir)
        with RecordBook(out / "detections.json") as book:
            done = run(det, items, book, model=str(model), conf=conf, iou=iou, max_detections=max_detections,
                       echo=click.echo, warn=lambda s: click.echo(s, err=True), executor=executor)
    click.echo(run_summary(done.images, done.made + done.recorded, done.failed, executor.retries,
                           time.perf_counter() - t0, executor.workers, made=done.made, skipped=done.skipped,
                           what="overlay"), err=True)
    click.echo(f"{len(items)} image(s) -> {out / 'detections.json'}", err=True)
    if done.failed:
        sys.exit(1)
