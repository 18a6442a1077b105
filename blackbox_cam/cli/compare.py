"""``blackbox-cam compare``: several methods on the same images, scored and reported side by side.

Parses, loads, and calls :func:`blackbox_cam.jobs.compare.job.compare_images` and
:func:`blackbox_cam.jobs.compare.report.write_report`; no metric code lives here.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..methods import bind_all
from .options import (announce_backend, classifier_kwargs, detector_kwargs, detector_options, image_bar, method_kwargs, method_options, methods_option,
                      model_options, note_skipped, ray_kwargs, ray_options, run_options, start_executor)

DEFAULT_METHODS = "decam,gradcam,rise"


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="INPUT...")
@methods_option(DEFAULT_METHODS)
@click.option("--boxes", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV with header image,x0,y0,x1,y1 (file name, box in original-image pixels, x1/y1 "
                   "exclusive; extra columns ignored): adds pointing game and energy in box.")
@click.option("--reference", default=None, metavar="NAME",
              help="Map the others are compared with (default: the first white-box method listed).")
@run_options
@click.option("--road/--no-road", default=True, show_default=True,
              help="Compute ROAD (18 imputed images per map).")
@click.option("--tolerance", type=click.FloatRange(min=0), default=15.0, show_default=True,
              help="Pointing-game tolerance in pixels of the original image.")
@click.option("--topk", type=click.FloatRange(min=0, max=100, min_open=True), default=20.0, show_default=True,
              help="Top-k percent of pixels for the IoU agreement.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="compare-out",
              show_default=True, help="Folder for index.html, compare.json, compare.csv and panels/.")
@click.option("--save-maps", is_flag=True,
              help="Also write every map into OUT/explain/ as explain writes them: <stem>_<method>.npy "
                   "(float32, image size, 0..1), <stem>_<method>.png (overlay) and explain.json.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (it is off anyway when stderr is not a terminal).")
@detector_options
@ray_options
@method_options
@model_options
def compare(model: Path, images: tuple[Path, ...], methods: list[str], boxes: Path | None, reference: str | None,
            target: str, budget: int | None, seed: int, road: bool, tolerance: float, topk: float,
            out_dir: Path, save_maps: bool, quiet: bool, detection: int | None, **kw: Any) -> None:
    """Run each method on each image (same target), score every map, write a report.

    INPUT is an image file, a folder (recursive, sorted) or a manifest CSV (an `image` column,
    paths relative to the CSV); maps are cached under OUT/maps/ and reused by a later run.

    Writes OUT/index.html (summary table, then one panel per image), compare.json and
    compare.csv (one row per image x method: deletion/insertion AUC, ROAD, agreement with the
    reference map, pointing game and energy in box when --boxes is given, queries, seconds) and
    OUT/panels/*.png. On a detector every detection (or --detection K, or those of --target's
    class) is explained by each method from one query set and scored on its own: one row per
    image x detection x method (detection, box, label), deletion/insertion on the detection's
    D-RISE similarity, pointing game and energy in its box; one panel per detection; with --save-maps also OUT/explain/ (the maps as `explain --out
    OUT/explain` writes them). An image that fails is recorded and the rest go on; the exit
    code is 1 if any image or method failed.
    """
    from ..jobs.compare.job import MetricSettings, compare_images, read_boxes
    from ..io.output import ensure_dir
    from ..jobs.compare.report import write_report

    from ..jobs.dataset import MapCache, expand_inputs
    from ..jobs.executors import run_summary
    from ..errors import BlackboxCamError
    from ..model.open import open_model

    given = method_kwargs(kw)
    ray = ray_kwargs(kw)
    bind_all(methods, budget, given)  # options and budget checked before the model is even loaded
    items = expand_inputs(images)
    box_map = read_boxes(boxes, [it.path for it in items]) if boxes is not None else None
    ckw = classifier_kwargs(kw)
    clf = open_model(model, **detector_kwargs(kw), **ckw)
    if clf.task == "detector":
        from ..jobs.compare.detections import check_detector_options
        check_detector_options(clf, boxes=boxes)
    elif detection is not None:
        raise BlackboxCamError("--detection applies to detectors; this model is a classifier")
    bind_all(methods, budget, given, clf=clf)  # against the model (input size, --layer), before anything is said
    announce_backend(clf)
    executor = start_executor(clf, ckw, ray)   # before anything is written: a bad --ray writes nothing
    if clf.task == "detector":
        _compare_detector(clf, items, methods, target=target, detection=detection, budget=budget, seed=seed,
                          reference=reference, given=given, out_dir=out_dir, save_maps=save_maps, quiet=quiet,
                          settings=MetricSettings(road=road, tolerance=tolerance, topk=topk, seed=seed),
                          executor=executor)
        return
    t0 = time.perf_counter()
    try:
        ensure_dir(out_dir)
        skipped = note_skipped(items)
        with image_bar(len(items) - len(skipped), ",".join(methods), quiet) as bar:
            result = compare_images(clf, [it for it in items if not it.skip], methods, cache=MapCache(out_dir, clf),
                                    target=target, budget=budget, seed=seed, boxes=box_map, reference=reference,
                                    options=given, settings=MetricSettings(road=road, tolerance=tolerance, topk=topk,
                                                                           seed=seed),
                                    progress=lambda msg: bar.write(msg, file=sys.stderr), executor=executor,
                                    on_image=lambda _im: bar.update(1))
    finally:
        executor.close()
    result.skipped = [{"image": it.name, "reason": it.error or ""} for it in skipped]
    n_images = len(result.images) + len({f["image"] for f in result.failures if not f["method"]})
    n_made = sum(1 for ir in result.images for r in ir.results.values() if not r.cached)
    written = write_report(result, out_dir)
    if save_maps:  # the explain command's own writer: same files, same explain.json records
        from ..explainer.records import save_results

        saved = save_results([r for ir in result.images for r in ir.results.values()], out_dir / "explain")
        click.echo(f"{len(saved)} maps -> {out_dir / 'explain'}", err=True)
    click.echo(run_summary(n_images, len(result.rows), len(result.failures), executor.retries,
                           time.perf_counter() - t0, executor.workers, made=n_made, skipped=len(skipped)), err=True)
    click.echo(f"{len(result.rows)} maps scored, {len(result.failures)} failure(s) -> {written['html']}")
    if result.failures:
        sys.exit(1)


def _compare_detector(det: Any, items: list[Any], methods: list[str], *, target: str, detection: int | None,
                      budget: int | None, seed: int, reference: str | None, given: dict[str, Any], out_dir: Path,
                      save_maps: bool, quiet: bool, settings: Any, executor: Any) -> None:
    """``compare`` on a detector (:func:`blackbox_cam.jobs.compare.detections.compare_detections`),
    its images' work run by ``executor`` (in this process, or Ray workers with ``--ray``)."""
    from ..io.output import ensure_dir
    from ..jobs.compare.detections import compare_detections
    from ..jobs.compare.report import write_report
    from ..jobs.executors import run_summary

    t0 = time.perf_counter()
    try:
        ensure_dir(out_dir)
        skipped = note_skipped(items)
        with image_bar(len(items) - len(skipped), ",".join(methods), quiet) as bar:
            result = compare_detections(det, [it for it in items if not it.skip], methods,
                                        target=None if str(target).lower() == "top1" else target,
                                        detection=detection, budget=budget, seed=seed, reference=reference,
                                        settings=settings, options=given,
                                        progress=lambda msg: bar.write(msg, file=sys.stderr),
                                        on_image=lambda _it: bar.update(1), executor=executor)
    finally:
        executor.close()
    result.skipped = [{"image": it.name, "reason": it.error or ""} for it in skipped] + result.skipped
    written = write_report(result, out_dir)
    if save_maps:
        from ..explainer.records import save_results

        saved = save_results([r for ir in result.images for r in ir.results.values()], out_dir / "explain")
        click.echo(f"{len(saved)} maps -> {out_dir / 'explain'}", err=True)
    n_images = len({ir.name for ir in result.images}) + len({f["image"] for f in result.failures if not f["method"]})
    click.echo(run_summary(n_images, len(result.rows), len(result.failures), executor.retries,
                           time.perf_counter() - t0, executor.workers, made=len(result.rows), skipped=len(skipped)),
               err=True)
    click.echo(f"{len(result.rows)} detection maps scored, {len(result.failures)} failure(s) -> {written['html']}")
    if result.failures:
        sys.exit(1)
