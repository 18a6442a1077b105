"""``blackbox-cam explain``: saliency maps for images, one file per image and method."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import BlackboxCamError
from ..masks import BASELINES
from ..methods import METHODS
from ._group import method_list, progress
from .options import classifier_kwargs, model_options, run_options


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="INPUT...")
@click.option("--method", "-m", "methods", default="decam", show_default=True, metavar="NAME[,NAME...]",
              help=f"Saliency method(s): {', '.join(METHODS)}.")
@run_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="explain-out",
              show_default=True, help="Folder for <stem>_<method>.npy/.png and explain.json.")
@click.option("--grid", type=click.IntRange(min=2), default=None,
              help="decam/rise: mask grid size (default decam 8, rise 7).")
@click.option("--baseline", type=click.Choice(list(BASELINES)), default=None,
              help="What removed pixels become (default zeros: the mean colour after normalisation).")
@click.option("--window", type=click.IntRange(min=1), default=None, help="occlusion: window size in pixels.")
@click.option("--layer", default="auto", show_default=True,
              help="White-box methods: tensor name to explain at (see `blackbox-cam layers MODEL`).")
@model_options
def explain(model: Path, images: tuple[Path, ...], methods: str, target: str, budget: int | None, seed: int,
            out_dir: Path, grid: int | None, baseline: str | None, window: int | None, layer: str,
            **kw: Any) -> None:
    """Explain the images in INPUT... with MODEL and write saliency maps.

    INPUT is an image file, a folder (searched recursively for images, sorted) or a manifest
    CSV (header with an `image` column, paths relative to the CSV). Maps are cached under
    OUT/maps/ (keyed by image content, method, options, seed, target and model), so running
    again, or with more images, reuses every map already made. For every image and method this writes <stem>_<method>.npy (float32, image size, values
    0..1), <stem>_<method>.png (heat-map overlay) and a record in explain.json. An image that
    fails is recorded with its error and the others go on; the exit code is 1 if any failed.

    \b
    Examples:
      blackbox-cam explain model.onnx cat.png                     # DE-CAM, 2000 queries
      blackbox-cam explain model.onnx imgs/*.jpg -m decam,rise --budget 1000 --seed 1
      blackbox-cam explain model.onnx cat.png -m gradcam --target "tabby, tabby cat"
    """
    from ..dataset import MapCache, expand_inputs, explain_cached
    from ..output import ensure_dir, write_json, write_npy, write_png
    from ..render import overlay
    from ..runtime import Classifier

    names = method_list(methods)
    if budget is not None and budget <= 0:
        raise BlackboxCamError(f"--budget must be a positive number of model queries, got {budget}")
    items = expand_inputs(images)
    out = ensure_dir(out_dir)
    clf = Classifier(model, **classifier_kwargs(kw))
    cache = MapCache(out, clf)
    records: list[dict[str, Any]] = []
    failed = 0
    for item in items:
        try:
            image = item.load()
            digest = item.digest()
        except BlackboxCamError as e:
            click.echo(f"error: {e}", err=True)
            records.extend({"model": str(model), "image": str(item.path), "method": m, "error": str(e)} for m in names)
            failed += 1
            write_json(out / "explain.json", records)
            continue
        for name in names:
            spec = METHODS[name]
            opts: dict[str, Any] = {"layer": layer} if spec.whitebox else {
                k: v for k, v in (("grid", grid), ("baseline", baseline), ("window", window)) if v is not None}
            rec: dict[str, Any] = {"model": str(model), "image": str(item.path), "method": name}
            t0 = time.perf_counter()
            bar = progress(budget, f"{item.name} {name}")
            clf.on_queries = bar.update
            try:
                res, hit = explain_cached(clf, image, name, cache=cache, digest=digest, target=target,
                                          budget=budget, seed=seed, **opts)
            except BlackboxCamError as e:
                click.echo(f"error: {item.path}: {e}", err=True)
                rec["error"] = str(e)
                failed += 1
            else:
                stem = out / f"{item.stem()}_{name}"
                write_npy(stem.with_suffix(".npy"), res.saliency)
                write_png(stem.with_suffix(".png"), overlay(image, res.saliency))
                ex = res.explanation
                rec.update({"predicted": res.predicted, "predicted_label": clf.label(res.predicted),
                            "predicted_score": res.predicted_score, "label": clf.label(res.target),
                            "score": res.score, "target": res.target, "params": ex.params,
                            "queries": ex.queries, "seconds": ex.seconds if hit else round(time.perf_counter() - t0, 3),
                            "cached": hit, "npy": stem.with_suffix(".npy").name, "png": stem.with_suffix(".png").name})
                click.echo(f"{item.name} {name}: {clf.label(res.target)} ({res.score:.3f}), "
                           f"{'cached' if hit else f'{ex.queries} queries'}, {rec['seconds']:.1f}s "
                           f"-> {stem.with_suffix('.png')}")
            finally:
                bar.close()
                clf.on_queries = None
            records.append(rec)
            write_json(out / "explain.json", records)
    if failed:
        sys.exit(1)


