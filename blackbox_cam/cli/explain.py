"""``blackbox-cam explain``: saliency maps for images, one file per image and method."""
from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import BlackboxCamError
from ..methods import bind_all
from ..methods.uncertainty import DEFAULT_STABILITY, AutoBudget
from ._group import progress
from .options import (announce_backend, load_classifier, method_kwargs, method_options, methods_option,
                      model_options, run_options)


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
@method_options
@model_options
def explain(model: Path, images: tuple[Path, ...], methods: list[str], target: str, budget: int | str | None,
            seed: int, out_dir: Path, stability: float | None, max_budget: int | None, show_uncertainty: bool,
            **kw: Any) -> None:
    """Explain the images in INPUT... with MODEL and write saliency maps.

    INPUT is an image file, a folder (searched recursively for images, sorted) or a manifest
    CSV (header with an `image` column, paths relative to the CSV). Maps are cached under
    OUT/maps/ (keyed by image content, method, options, seed, target and model), so running
    again, or with more images, reuses every map already made. For every image and method this
    writes <stem>_<method>.npy (float32, image size, values 0..1), <stem>_<method>.png (heat-map
    overlay), for black-box methods <stem>_<method>_se.npy (the map's standard error, same
    scale), and a record in explain.json (with `uncertainty`: stability, significance and, under
    --budget auto, the queries used and why it stopped). explain.json is merged across runs by (image,
    method); when another image already uses a stem, the next gets <stem>-2, <stem>-3, ... An
    image that fails is recorded with its error and the others go on; the exit code is 1 if
    any failed, 130 on Ctrl-C.
    Method options (--grid, --window, ...) go to the chosen methods that take them.

    \b
    Examples:
      blackbox-cam explain model.onnx cat.png                     # DE-CAM, 2000 queries
      blackbox-cam explain model.onnx imgs/*.jpg -m decam,rise --budget 1000 --seed 1
      blackbox-cam explain model.onnx cat.png -m gradcam --target "tabby, tabby cat"
      blackbox-cam explain model.onnx cat.png -m decam --budget auto --show-uncertainty
    """
    from ..jobs.dataset import MapCache, expand_inputs, explain_cached
    from ..explainer.pipeline import resolve_target, score_image
    from ..explainer.records import commit_result, result_record
    from ..io.output import RecordBook, ensure_dir

    given = method_kwargs(kw)
    if budget == "auto":
        budget = AutoBudget(DEFAULT_STABILITY if stability is None else stability, max_budget)
    elif stability is not None or max_budget is not None:
        raise BlackboxCamError(f"{'--stability' if stability is not None else '--max-budget'} needs --budget auto")
    bind_all(methods, budget, given)  # options and budget checked before the model is even loaded
    items = expand_inputs(images)
    out = ensure_dir(out_dir)
    book = RecordBook(out / "explain.json")  # merged with earlier runs' records, under a lock
    clf = load_classifier(model, kw)
    calls = bind_all(methods, budget, given, clf=clf)  # now also against the model: input size, --layer
    if str(target).lower() != "top1":
        target = resolve_target(clf, target)  # a named target is resolved once, for every image
    announce_backend(clf)
    cache = MapCache(out, clf)
    with book:  # explain.json is complete on disk when the loop ends, Ctrl-C included
        failed = 0
        size_said: dict = {}  # image sizes whose probed geometry was said
        for item in items:
            if item.skip:
                click.echo(item.error, err=True)
                book.commit({"model": str(model), "image": str(item.path), "method": None, "skipped": item.error})
                continue
            try:
                image, size = item.read()
                digest = item.digest()
            except BlackboxCamError as e:
                click.echo(f"error: {e}", err=True)
                for m in methods:
                    book.commit({"model": str(model), "image": str(item.path), "method": m, "error": str(e)})
                failed += 1
                continue
            # the unmasked prediction: at most once per image, and only when a map is not cached
            scored = functools.cache(lambda image=image: score_image(clf, image, target))
            for name in methods:
                rec: dict[str, Any] = {"model": str(model), "image": str(item.path), "method": name,
                                       "backend": clf.session.record()}
                t0 = time.perf_counter()
                bar = progress(calls[name].budget, f"{item.name} {name}")
                clf.on_queries = bar.update
                try:
                    res, hit = explain_cached(clf, image, calls[name], cache=cache, digest=digest, target=target,
                                              seed=seed, scored=scored)
                except BlackboxCamError as e:
                    click.echo(f"error: {item.path}: {e}", err=True)
                    rec["error"] = str(e)
                    failed += 1
                    book.commit(rec)
                    continue
                finally:
                    bar.close()
                    clf.on_queries = None
                ex = res.explanation
                rec = result_record(res, image=str(item.path), model=str(model), cached=hit, image_size=size,
                                    seconds=ex.seconds if hit else round(time.perf_counter() - t0, 3))
                if getattr(clf, "preprocess_fn", None) is not None and size_said.setdefault(image.shape[:2], False) is False:
                    size_said[image.shape[:2]] = True  # the probed geometry, once per image size
                    click.echo(f"{item.name}: {clf.geometry.describe(image.shape[:2])}", err=True)
                if ex.warning:  # a map with no information is written, and said to be one
                    click.echo(f"warning: {item.name}: {ex.warning}", err=True)
                commit_result(book, rec, res, stem=item.path.stem if item.origin == "arg" else item.stem(),
                              show_uncertainty=show_uncertainty)
                click.echo(f"{item.name} {name}: {clf.label(res.target)} ({res.score:.3f}), "
                           f"{'cached' if hit else f'{ex.queries} queries'}, {rec['seconds']:.1f}s "
                           f"-> {out / rec['png']}")
    if failed:
        sys.exit(1)


