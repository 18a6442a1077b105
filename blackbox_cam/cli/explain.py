"""``blackbox-cam explain``: saliency maps for images, one file per image and method."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import BlackboxCamError
from ..methods import bind_all
from ..methods.uncertainty import DEFAULT_STABILITY, AutoBudget
from ..model.open import open_model
from ._group import progress
from .options import (announce_backend, classifier_kwargs, detector_options, image_bar, method_kwargs, method_options, methods_option,
                      model_options, note_skipped, ray_kwargs, ray_options, run_options, start_executor)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="INPUT...")
@methods_option("decam", "--method")
@run_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="explain-out",
              show_default=True, help="Folder for <stem>_<method>.npy/.png and explain.json.")
@click.option("--stability", type=float, default=None, metavar="R",
              help=f"With --budget auto: stop when the map's split-half stability reaches R (default "
                   f"{DEFAULT_STABILITY}; docs/uncertainty.md).")
@click.option("--max-budget", type=click.IntRange(min=1), default=None, metavar="N",
              help="With --budget auto: never more queries than N (default: the method's budget).")
@click.option("--show-uncertainty", is_flag=True, default=False,
              help="Overlays desaturate where the map is not 2 standard errors above zero.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (it is off anyway when stderr is not a terminal).")
@click.option("--box", default=None, metavar="X0,Y0,X1,Y1",
              help="Detectors: explain a box the model did not report (image pixels), as a detection of --target LABEL.")
@detector_options
@ray_options
@method_options
@model_options
def explain(model: Path, images: tuple[Path, ...], methods: list[str], target: str, budget: int | str | None,
            seed: int, out_dir: Path, stability: float | None, max_budget: int | None, show_uncertainty: bool,
            quiet: bool, detection: int | None, box: str | None, conf: float | None, iou: float | None,
            max_detections: int | None, **kw: Any) -> None:
    """Explain the images in INPUT... with MODEL and write saliency maps.

    INPUT is an image file, a folder (searched recursively for images, sorted) or a manifest
    CSV (header with an `image` column, paths relative to the CSV). Maps are cached under
    OUT/maps/ (keyed by image content, method, options, seed, target and model), so running
    again, or with more images, reuses every map already made. For every image and method this
    writes <stem>_<method>.npy (float32, image size, values 0..1), <stem>_<method>.png (heat-map
    overlay), for black-box methods <stem>_<method>_se.npy (the map's standard error, same
    scale), and a record in explain.json (with `uncertainty`: stability, significance and, under
    --budget auto, the queries used and why it stopped). explain.json is merged across runs by (image,
    method); when another image already uses a stem, the next gets <stem>-2, <stem>-3, ...

    On a detector, every detection of an image (or --detection K, or those of --target's class) is
    explained from one set of queries: <stem>_<method>_det<K>.npy/.png per detection (box and label
    drawn) and one record each with "box" (image pixels), "label", "class", "score", "detection" and
    "similarity" (the D-RISE similarity the map explains). --box X0,Y0,X1,Y1 --target LABEL explains
    a box the model did not report (<stem>_<method>_box.*). An image with no detection is recorded
    with a warning. An
    image that fails is recorded with its error and the others go on; the exit code is 1 if
    any failed, 130 on Ctrl-C.
    Method options (--grid, --window, ...) go to the chosen methods that take them.

    \b
    Examples:
      blackbox-cam explain model.onnx cat.png                     # DE-CAM, 2000 queries
      blackbox-cam explain model.onnx imgs/*.jpg -m decam,rise --budget 1000 --seed 1
      blackbox-cam explain model.onnx cat.png -m gradcam --target "tabby, tabby cat"
      blackbox-cam explain model.onnx cat.png -m decam --budget auto --show-uncertainty
      blackbox-cam explain yolov8n.onnx street.jpg -m drise,decam --budget 1000
      blackbox-cam explain yolov8n.onnx street.jpg -m drise --box 10,40,90,200 --target person
      blackbox-cam explain model.onnx photos/ -m decam --budget 500 --ray          # local Ray
      blackbox-cam explain model.onnx photos/ --ray ray://head:10001 --workers 64  # a cluster
    """
    from ..jobs.dataset import MapCache, explain_items, expand_inputs
    from ..jobs.executors import run_summary
    from ..explainer.pipeline import resolve_target
    from ..explainer.records import commit_result, result_record
    from ..io.output import RecordBook, ensure_dir

    given = method_kwargs(kw)
    ray = ray_kwargs(kw)
    if budget == "auto":
        budget = AutoBudget(DEFAULT_STABILITY if stability is None else stability, max_budget)
    elif stability is not None or max_budget is not None:
        raise BlackboxCamError(f"{'--stability' if stability is not None else '--max-budget'} needs --budget auto")
    bind_all(methods, budget, given)  # options and budget checked before the model is even loaded
    thresholds = {k: v for k, v in (("conf", conf), ("iou", iou), ("max_detections", max_detections)) if v is not None}
    if thresholds:
        from ..model.detector import check_thresholds
        check_thresholds(conf if conf is not None else 0.25, iou if iou is not None else 0.45,
                         max_detections if max_detections is not None else 300)
    if box is not None:
        from ..explainer.detection_maps import parse_box
        parse_box(box)
        if str(target).lower() == "top1":
            raise BlackboxCamError("--box needs --target LABEL: the class the model should have reported there")
    items = expand_inputs(images)
    ckw = classifier_kwargs(kw)
    clf = open_model(model, **thresholds, **ckw)
    detector = clf.task == "detector"
    if not detector and (detection is not None or box is not None):
        raise BlackboxCamError(f"{'--detection' if detection is not None else '--box'} applies to detectors; "
                               f"{model} is a classifier")
    calls = bind_all(methods, budget, given, clf=clf)  # now also against the model: input size, --layer
    if str(target).lower() != "top1":
        target = resolve_target(clf, target)  # a named target is resolved once, for every image
    announce_backend(clf)
    if detector:
        from ..jobs.explain import explain_detector_items

        executor = start_executor(clf, ckw, ray)   # before anything is written: a bad --ray writes nothing
        t_run = time.perf_counter()
        with executor:
            out = ensure_dir(out_dir)  # nothing is written before every option is checked
            with RecordBook(out / "explain.json") as book:
                done = explain_detector_items(clf, items, calls, book, model=str(model), target=target,
                                              detection=detection, box=box, seed=seed,
                                              show_uncertainty=show_uncertainty, echo=click.echo,
                                              warn=lambda s: click.echo(s, err=True), progress=progress,
                                              executor=executor)
        click.echo(run_summary(done.images, done.maps, done.failed, executor.retries, time.perf_counter() - t_run,
                               executor.workers, skipped=done.skipped), err=True)
        if done.failed:
            sys.exit(1)
        return
    executor = start_executor(clf, ckw, ray)   # before anything is written: a bad --ray writes nothing
    t_run = time.perf_counter()
    failed = made = maps = 0
    size_said: set = set()  # image sizes whose probed geometry was said (a preprocess_fn)
    try:
        out = ensure_dir(out_dir)
        book = RecordBook(out / "explain.json")  # merged with earlier runs' records, under a lock
        skipped = note_skipped(items)
        for item in skipped:
            book.commit({"model": str(model), "image": str(item.path), "method": None, "skipped": item.error})
        cache = MapCache(out, clf)
        todo = [it for it in items if not it.skip]
        with book, image_bar(len(todo), ",".join(methods), quiet) as bar:
            # explain.json is complete on disk when the loop ends, Ctrl-C included
            for im in explain_items(clf, todo, calls, target=None if target == "top1" else target, seed=seed,
                                    cache=cache, executor=executor):
                item = im.item
                bar.update(1)
                if im.error is not None:
                    bar.write(f"error: {im.error}", file=sys.stderr)
                    for m in methods:
                        book.commit({"model": str(model), "image": str(item.path), "method": m, "error": im.error})
                    failed += 1
                    continue
                for name in methods:
                    if name in im.errors:
                        bar.write(f"error: {item.path}: {im.errors[name]}", file=sys.stderr)
                        book.commit({"model": str(model), "image": str(item.path), "method": name,
                                     "backend": clf.session.record(), "error": im.errors[name]})
                        failed += 1
                        continue
                    res, fresh = im.results[name]
                    maps += 1
                    made += fresh
                    ex = res.explanation
                    rec = result_record(res, image=str(item.path), model=str(model), cached=not fresh,
                                        image_size=im.size, seconds=round(float(ex.seconds), 3))
                    if getattr(clf, "preprocess_fn", None) is not None and tuple(im.image.shape[:2]) not in size_said:
                        size_said.add(tuple(im.image.shape[:2]))  # the probed geometry, once per image size
                        bar.write(f"{item.name}: {clf.geometry.describe(tuple(im.image.shape[:2]))}", file=sys.stderr)
                    if ex.warning:  # a map with no information is written, and said to be one
                        bar.write(f"warning: {item.name}: {ex.warning}", file=sys.stderr)
                    commit_result(book, rec, res, stem=item.path.stem if item.origin == "arg" else item.stem(),
                                  show_uncertainty=show_uncertainty)
                    bar.write(f"{item.name} {name}: {clf.label(res.target)} ({res.score:.3f}), "
                              f"{'cached' if not fresh else f'{ex.queries} queries'}, {rec['seconds']:.1f}s "
                              f"-> {out / rec['png']}")
    finally:
        executor.close()
    click.echo(run_summary(len(todo), maps, failed, executor.retries, time.perf_counter() - t_run,
                           executor.workers, made=made, skipped=len(skipped)), err=True)
    if failed:
        sys.exit(1)
