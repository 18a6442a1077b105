"""``blackbox-cam gate``: fail a CI build when a model's evidence lies where it must not.

Parses and validates (thresholds, regions against every image) before any model query, then
calls :func:`blackbox_cam.jobs.gate.job.run_gate`; writes ``gate.json``, failure overlays and the JUnit
report (:mod:`blackbox_cam.jobs.gate.junit`). Exit codes: 0 the gate passed, 1 it failed (or an image
could not be checked), 2 usage error (nothing written but the output folder).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..jobs.executors import named
from ..jobs.gate.job import MAX_FAIL_RATE, MAX_SHARE, MIN_SHARE
from ..methods import METHODS
from .options import (announce_pipeline, classifier_kwargs, detector_kwargs, detector_options, image_bar, method_kwargs, method_options, methods_option,
                      model_options, note_skipped, ray_kwargs, ray_options, run_options, start_executor)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="INPUT...")
@click.option("--forbid", multiple=True, metavar="REGION",
              help="Where evidence must not lie: a mask image (white = region, resized to each image with "
                   "nearest neighbour) or a box x0,y0,x1,y1 in original-image pixels (x1, y1 exclusive). "
                   "Repeat to unite several.")
@click.option("--require", multiple=True, metavar="REGION",
              help="Where evidence must lie (same forms as --forbid); checked with --min-share.")
@click.option("--max-share", type=float, default=MAX_SHARE, show_default=True, metavar="F",
              help="An image fails if more than this fraction of its positive map mass is in the forbidden "
                   "region (0.3 leaves room for the one-cell blur of a saliency map; see docs).")
@click.option("--min-share", type=float, default=MIN_SHARE, show_default=True, metavar="F",
              help="With --require: an image fails if less than this fraction of its map mass is inside.")
@click.option("--max-fail-rate", type=float, default=MAX_FAIL_RATE, show_default=True, metavar="R",
              help="The gate fails if more than this fraction of the images fail (0: any image).")
@methods_option("decam", help=f"Saliency method(s), each gated on its own: {', '.join(METHODS)}. decam needs "
                              "only the model's outputs; gradcam is faster where the graph allows gradients.")
@run_options
@click.option("--junit", "junit", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Write a JUnit XML report (one testcase per image) for the CI server.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="gate-out",
              show_default=True, help="Folder for gate.json, overlays/ of the failing images and the map "
                                      "cache maps/.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (it is off anyway when stderr is not a terminal).")
@click.option("--box-margin", type=float, default=None, metavar="M",
              help="Detectors: each detection's evidence (share of its map's positive mass, at least --min-share) "
                   "must lie in its own box grown by M (width and height times 1+M; default 0.5 when no "
                   "--forbid/--require is given).")
@click.option("--top-k", "top_k", type=float, default=None, metavar="P",
              help="Detectors: the evidence is the map's top P % pixels (the share of them inside a region), "
                   "not its positive mass; any of them in a --forbid region fails the peak rule.")
@detector_options
@ray_options
@method_options
@model_options
def gate(model: Path, inputs: tuple[Path, ...], forbid: tuple[str, ...], require: tuple[str, ...],
         max_share: float, min_share: float, max_fail_rate: float, methods: list[str], target: str,
         budget: int | None, seed: int, junit: Path | None, out_dir: Path, quiet: bool, box_margin: float | None,
         top_k: float | None, detection: int | None, **kw: Any) -> None:
    """Check that MODEL's evidence on INPUT... stays out of the --forbid regions.

    INPUT is an image file, a folder (searched recursively, sorted; other files in it, a README
    or a CSV, are skipped with a note, not counted) or a manifest CSV (an `image` column). Maps are cached under OUT/maps/ by image content, method, options and
    model, so a nightly run explains only new images, or everything again for a new model.

    Per image: share = positive map mass inside the forbidden region / total positive mass;
    the image fails if share > --max-share, if the map's maximum lies in a forbidden region,
    or (with --require) if the share inside the required region < --min-share. The gate fails
    if more than --max-fail-rate of the images fail, or an image could not be checked.

    Writes OUT/gate.json (per-image numbers), OUT/overlays/*.png for failing images (forbidden
    region outlined in magenta) and, with --junit, a JUnit XML report (one testcase per image).

    On a detector each detection is a case (one JUnit testcase per image and detection): its
    evidence must lie in its own box grown by --box-margin (required share >= --min-share)
    and/or out of the --forbid regions.
    Prints one summary line. Exit code 0 passed, 1 failed, 2 usage error (nothing written).

    \b
    Example:
      blackbox-cam gate models/clever_hans/clever_hans.onnx models/clever_hans/images \\
          --forbid models/clever_hans/timestamp_mask.png -m gradcam --junit gate.xml
    """
    from ..jobs.dataset import expand_inputs
    from ..jobs.executors import run_summary
    from ..jobs.gate.job import GateRule, check_inputs
    from ..jobs.gate.junit import write_junit
    from ..methods import bind_all
    from ..io.output import ensure_dir, write_json
    from ..jobs.gate.regions import parse_region
    from ..errors import BlackboxCamError
    from ..model.open import open_model

    rule = GateRule(max_share=max_share, min_share=min_share, max_fail_rate=max_fail_rate)
    options = method_kwargs(kw)
    ray = ray_kwargs(kw)
    bind_all(methods, budget, options)  # methods, options and budget checked before the model is loaded
    forbid_r = [parse_region(s) for s in forbid]
    require_r = [parse_region(s) for s in require]
    items = expand_inputs(inputs)
    if forbid_r or require_r:
        check_inputs(items, forbid_r, require_r)
    from ..jobs.gate.detections import check_margin, check_top_k
    check_margin(box_margin)
    check_top_k(top_k)
    ckw = classifier_kwargs(kw)
    clf = open_model(model, **detector_kwargs(kw), **ckw)
    if clf.task != "detector":
        for flag, v in (("--box-margin", box_margin), ("--top-k", top_k), ("--detection", detection)):
            if v is not None:
                raise BlackboxCamError(f"{flag} applies to detectors; this model is a classifier")
        check_inputs(items, forbid_r, require_r)
    elif box_margin is None and not (forbid_r or require_r):
        box_margin = 0.5
    announce_pipeline(clf)
    bind_all(methods, budget, options, clf=clf)
    executor = start_executor(clf, ckw, ray)   # before anything is written: a bad --ray writes nothing
    try:
        if junit is not None:
            ensure_dir(junit.parent)
        out = ensure_dir(out_dir)
        skipped = note_skipped(items)
        t0 = time.perf_counter()
        with image_bar(len(items) - len(skipped), ",".join(methods), quiet) as bar:
            report = _run(clf, items, methods, forbid_r, require_r, rule, target, budget, seed, options, out,
                          executor, lambda _im: bar.update(1), box_margin=box_margin, top_k=top_k,
                          detection=detection)
    finally:
        executor.close()
    for case in report.cases:
        if case.error is not None:
            click.echo(f"error: {named(case.image, case.error)}", err=True)
    write_json(out / "gate.json", report.to_dict())
    if junit is not None:
        write_junit(junit, report)
    errors = len({c.image for c in report.cases if c.error is not None})
    click.echo(run_summary(len({c.image for c in report.cases}), sum(c.error is None for c in report.cases), errors,
                           executor.retries, time.perf_counter() - t0, executor.workers,
                           made=sum(c.error is None and not c.cached for c in report.cases),
                           skipped=len(skipped)), err=True)
    click.echo(f"{report.summary()} -> {out / 'gate.json'}")
    if not report.passed:
        sys.exit(1)


def _run(clf, items, methods, forbid_r, require_r, rule, target, budget, seed, options, out, executor, progress,
         box_margin=None, top_k=None, detection=None):
    """run_gate with the map cache under OUT/maps and every failing image's overlay in OUT/overlays."""
    from ..io.output import ensure_dir, write_png
    from ..jobs.dataset import MapCache
    from ..jobs.gate.job import failure_picture, run_gate

    def draw_failure(case, item, image, saliency, fmask, rmask) -> None:
        if case.passed:
            return
        det = "" if case.detection is None else f"_det{case.detection}"
        name = f"{item.stem()}{det}_{case.method}.png"
        write_png(ensure_dir(out / "overlays") / name, failure_picture(case, image, saliency, fmask, rmask))
        case.overlay = f"overlays/{name}"

    if clf.task == "detector":
        from ..jobs.gate.detections import run_gate_detections
        return run_gate_detections(clf, items, methods, forbid=forbid_r, require=require_r, rule=rule,
                                   box_margin=box_margin, top_k=top_k, target=None if str(target).lower() == "top1" else target,
                                   detection=detection, budget=budget, seed=seed, options=options,
                                   on_case=draw_failure, progress=progress, executor=executor)
    return run_gate(clf, items, methods, forbid=forbid_r, require=require_r, rule=rule, target=target,
                    budget=budget, seed=seed, options=options, cache=MapCache(out, clf), on_case=draw_failure,
                    pictures=0, executor=executor, progress=progress)
