"""``blackbox-cam global``: label-wise and overall global maps of a dataset, scored with PEPPR."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..methods import METHODS
from ..errors import BlackboxCamError
from .options import (announce_backend, budget_help, classifier_kwargs, detector_kwargs, detector_thresholds,
                      method_kwargs, method_options, model_options, ray_kwargs, ray_options, start_executor)


@click.command("global")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="INPUT...")
@click.option("--method", "-m", default="gradcam", show_default=True, type=click.Choice(list(METHODS)),
              help="Saliency method for the image-wise maps.")
@click.option("--budget", type=int, default=None, metavar="N", help=budget_help())
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (maps, PEPPR's random ranking).")
@click.option("--ground-truth", "ground_truth", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV with header image,label (label = class index or name; image relative to the CSV).")
@click.option("--target", type=click.Choice(["auto", "truth", "predicted"]), default="auto", show_default=True,
              help="Explain and group by the known label (truth) or the top-1 prediction; auto = truth "
                   "when labels are known (--ground-truth or a manifest label column).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="global-out",
              show_default=True, help="Folder for global_*.npy/.png, global_sheet.png, peppr.json/.png, "
                                      "global.json and the map cache maps/.")
@click.option("--peppr/--no-peppr", default=True, show_default=True,
              help="Score the global maps with PEPPR (2 x steps queries per image and ranking, 4 rankings).")
@click.option("--steps", type=click.IntRange(min=11), default=21, show_default=True,
              help="Fractions on each PEPPR curve (0..100 %).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars (they are off anyway when stderr is not a terminal).")
@click.option("--box-margin", type=float, default=None, metavar="M",
              help="Detectors: each detection's map is cropped to its box grown by M (width and height times 1+M; "
                   "default 0.5) and resized to a 64x64 box grid before averaging per label.")
@ray_options
@detector_thresholds
@method_options
@model_options
def global_(model: Path, inputs: tuple[Path, ...], method: str, budget: int | None, seed: int,
            ground_truth: Path | None, target: str, out_dir: Path, peppr: bool, steps: int,
            quiet: bool, box_margin: float | None, **kw: Any) -> None:
    """Global maps of MODEL over a dataset of aligned images, and their PEPPR faithfulness score.

    INPUT is an image file, a folder (recursive, sorted) or a manifest CSV (`image` column,
    optional `label`). Every image's map (cached under OUT/maps/, so a rerun or a larger dataset
    recomputes nothing it has) is made non-negative, scaled to sum 1 at the model input size and
    averaged per label: OUT/global_<label>.npy/.png (mean), global_<label>_std.npy/.png (spread),
    global_overall.npy/.png (mean of the label maps), global_sheet.png (all side by side).
    PEPPR (docs/global.md) erases / restores the top pixels of each global map and of a random
    ranking: OUT/peppr.json and peppr.png; > 0 means the global map is faithful. A bad image is
    recorded in global.json and the others go on; the exit code is then 1.

    \b
    Examples:
      blackbox-cam global models/stamped/stamped.onnx models/stamped/demo --ground-truth models/stamped/demo/labels.csv
      blackbox-cam global model.onnx scans/ -m decam --budget 500 --ray           # local Ray
      blackbox-cam global model.onnx manifest.csv --ray ray://head:10001          # a cluster
    """
    from ..jobs.executors import run_summary
    from ..jobs.global_.job import run_global
    from ..methods import METHODS, bind_all
    from ..model.open import open_model

    options = method_kwargs(kw)
    ray = ray_kwargs(kw)
    bind_all([method], budget, options)  # options and budget checked before the model is loaded
    ckw = classifier_kwargs(kw)
    clf = open_model(model, **detector_kwargs(kw), **ckw)
    if clf.task == "detector":
        return _global_detector(clf, inputs, out_dir, method=method, budget=budget, seed=seed, options=options,
                                margin=0.5 if box_margin is None else box_margin, ckw=ckw, ray=ray)
    if box_margin is not None:
        raise BlackboxCamError("--box-margin applies to detectors; this model is a classifier")
    if clf.preprocess_fn is not None and METHODS[method].whitebox:
        raise BlackboxCamError(f"global with {clf.preprocess_fn.name} aggregates maps in the images' own pixels; "
                               f"{method}'s maps are in the model's input space: use a black-box method "
                               "(-m decam, rise, occlusion)")
    bind_all([method], budget, options, clf=clf)
    announce_backend(clf)
    t0 = time.perf_counter()
    executor = start_executor(clf, ckw, ray)
    try:
        result = run_global(clf, inputs, out_dir, method=method, budget=budget, seed=seed, options=options,
                            ground_truth=ground_truth, target=target, peppr=peppr, steps=steps, executor=executor,
                            progress=None if quiet else _bar, say=lambda m: click.echo(m, err=True))
    finally:
        executor.close()
    secs = time.perf_counter() - t0
    n = len(result.images)
    click.echo(run_summary(n + len(result.failures), result.computed + result.reused, len(result.failures),
                           executor.retries, secs, executor.workers, made=result.computed,
                           skipped=len(result.skipped)), err=True)
    click.echo(f"{n} image(s) in {len(result.labels)} label(s), {len(result.failures)} failed; maps: "
               f"{result.computed} made, {result.reused} from the cache; {secs:.1f} s ({n / secs:.2f} images/s)")
    if result.peppr:
        for name, b in result.peppr["labels"].items():
            click.echo(f"  {name}: n={b['n_images']}, PEPPR {b['peppr']:.3f} (own maps {b['own_map']['peppr']:.3f})")
        o = result.peppr.get("overall")
        if o:
            click.echo(f"  overall: PEPPR {o['peppr']:.3f} (own maps {o['own_map']['peppr']:.3f})")
    click.echo(f"-> {Path(out_dir) / 'global_sheet.png'}, {Path(out_dir) / 'global.json'}")
    if result.failures:
        sys.exit(1)


def _global_detector(det: Any, inputs: Any, out_dir: Path, *, method: str, budget: int | None, seed: int,
                     options: dict[str, Any], margin: float, ckw: dict[str, Any], ray: dict[str, Any]) -> None:
    """``global`` on a detector (:func:`blackbox_cam.jobs.global_.detections.run_global_detections`),
    in this process or on Ray workers (``--ray``: the same files)."""
    from ..jobs.executors import run_summary
    from ..jobs.global_.detections import NO_DETECTION, check_margin, run_global_detections
    from ..methods import bind_all
    bind_all([method], budget, options, clf=det)   # every option checked before Ray starts or a file is written
    check_margin(margin)
    announce_backend(det)
    t0 = time.perf_counter()
    executor = start_executor(det, ckw, ray)       # a bad --ray: one line, nothing written
    try:
        result = run_global_detections(det, inputs, out_dir, method=method, budget=budget, seed=seed,
                                       options=options, margin=margin, say=lambda m: click.echo(m, err=True),
                                       executor=executor)
    finally:
        executor.close()
    secs = time.perf_counter() - t0
    empty = sum(s["reason"] == NO_DETECTION for s in result.skipped)
    click.echo(run_summary(result.computed + empty + len(result.failures), len(result.images), len(result.failures),
                           executor.retries, secs, executor.workers,
                           skipped=len(result.skipped) - empty), err=True)
    click.echo(f"{len(result.images)} detection(s) of {result.computed} image(s) in {len(result.labels)} label(s), "
               f"{len(result.failures)} failed; {secs:.1f} s; maps aligned to each box grown by {margin:g}")
    for k in result.aggregator.labels:
        click.echo(f"  {result.names[k]}: n={result.aggregator.count(k)}")
    click.echo(f"-> {Path(out_dir) / 'global_sheet.png'}, {Path(out_dir) / 'global.json'}")
    if result.failures:
        sys.exit(1)


def _bar(iterable, total: int, desc: str):
    """A tqdm bar on stderr (images done), silent when stderr is not a terminal."""
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, unit="img", leave=False, disable=None, file=sys.stderr)
