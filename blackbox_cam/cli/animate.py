"""``blackbox-cam animate``: CAManim, the explanation through every layer or through the search.

Parses options, loads the model, and calls :func:`blackbox_cam.jobs.animate.job.animate` and
:func:`blackbox_cam.jobs.animate.job.write_animation`; no map or metric code lives here.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import BlackboxCamError
from ..methods import METHODS, bind_all, split_options
from .options import (announce_backend, classifier_kwargs, image_bar, method_kwargs, method_options, methods_option,
                      model_options, note_skipped, ray_kwargs, ray_options, run_options, start_executor)

ANIMATABLE = [n for n, s in METHODS.items() if s.whitebox] + ["decam"]


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="INPUT...")
@methods_option("gradcam", help=f"White-box methods animate the layers ({', '.join(ANIMATABLE[:-1])}); decam "
                                "animates its search, one frame per generation (for models without usable layers).")
@click.option("--layers", "layers", default="all", show_default=True, metavar="all|blocks|NAME[,NAME...]",
              help="Tensors to animate, shown in graph order: all = every 4-D map `blackbox-cam layers` lists "
                   "(pooled 1x1 maps left out), blocks = the last map of every block, or tensor names.")
@click.option("--norm", type=click.Choice(["global", "layer", "both"]), default="both", show_default=True,
              help="layer: each frame scaled on its own (= explain --layer NAME); global: one range over the raw "
                   "CAMs of all layers (magnitudes comparable across depth); both: one animation of each.")
@click.option("--fps", type=click.FloatRange(min=0.1, max=50), default=5.0, show_default=True,
              help="Frames per second (GIF: rounded to 10 ms per frame).")
@click.option("--format", "fmt", type=click.Choice(["gif", "mp4"]), default="gif", show_default=True,
              help="gif (Pillow) or mp4 (needs the optional PyAV: pip install \"blackbox-cam[video]\").")
@click.option("--save-maps", is_flag=True,
              help="Also write <stem>_<method>_layers.npz: tensor name -> that layer's map at the image's size, "
                   "as explain --layer writes it.")
@click.option("--road/--no-road", default=True, show_default=True,
              help="ybROAD: ROAD of every frame at 20/40/60/80 % (noisy linear imputation). Costs 1 + 8 x FRAMES "
                   "model queries per image, scored in batches, and 8 sparse imputations per frame (the slow "
                   "part, ~0.1-0.5 s each at 224x224); writes <stem>_<method>_ybroad.csv and .png.")
@method_options
@run_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="animate-out",
              show_default=True, help="Folder for the GIF/MP4s, contact sheets, ybROAD CSV/plot and maps.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (it is off anyway when stderr is not a terminal).")
@ray_options
@model_options
def animate(model: Path, images: tuple[Path, ...], methods: list[str], layers: str, norm: str, fps: float, fmt: str,
            save_maps: bool, road: bool, target: str, budget: int | None, seed: int, out_dir: Path, quiet: bool,
            **kw: Any) -> None:
    """Animate what MODEL looks at in INPUT..., layer by layer (CAManim) or generation by generation.

    INPUT is an image file, a folder (searched recursively for images) or a manifest CSV (an
    `image` column), as for explain.

    White-box methods: one frame per layer in graph order, the CAM of that layer over the image,
    captioned with the layer name, i/N, its shape and its ROAD score; all layers come from one
    gradient run. decam: one frame per differential-evolution generation, the map so far beside
    the best mask, captioned with generation, queries used and best fitness (--budget applies).

    \b
    Writes, per image and method, into OUT:
      <stem>_<method>_layer.gif, _global.gif   (decam: _search.gif), or .mp4
      <stem>_<method>_<norm>_sheet.png         all frames on one page
      <stem>_<method>_ybroad.csv, .png         ROAD per frame, ybROAD max and mean (with --road)
      <stem>_<method>_layers.npz               with --save-maps
    \b
    Examples:
      blackbox-cam animate models/efficientnet_lite0.onnx models/images/chelsea.png --layers blocks
      blackbox-cam animate model.onnx cat.png -m decam --budget 1000 --no-road --format mp4
    """
    from ..jobs.animate.job import ATTENTION_METHODS, animate_unit, select_layers, write_files
    from ..jobs.dataset import expand_inputs
    from ..jobs.executors import Failed, ImageSource, Work, run_summary
    from ..model.runtime import Classifier
    from ..pictures import movie
    from ..io.output import ensure_dir

    names = methods
    bad = [m for m in names if m not in ANIMATABLE]
    if bad:
        raise BlackboxCamError(f"-m {', '.join(bad)}: cannot be animated; use a white-box method "
                               f"({', '.join(ANIMATABLE[:-1])}) or decam")
    given = method_kwargs(kw)
    ray = ray_kwargs(kw)
    bind_all(names, budget, given)  # options and budget checked before the model is loaded
    per = split_options(names, given)
    layered = [m for m in names if METHODS[m].whitebox and per[m]]
    if layered:
        raise BlackboxCamError(f"-m {', '.join(layered)}: a layer animation takes no method options "
                               f"(given: {', '.join('--' + k.replace('_', '-') for k in per[layered[0]])}); "
                               "choose its tensors with --layers")
    if fmt == "mp4" and not movie.have_mp4():
        raise BlackboxCamError(movie.MP4_HINT)
    items = expand_inputs(images)
    ckw = classifier_kwargs(kw)
    clf = Classifier(model, **ckw)
    if clf.preprocess_fn is not None and any(METHODS[m].whitebox for m in names):
        raise BlackboxCamError(f"animate draws white-box maps layer by layer in the model's input space; with "
                               f"{clf.preprocess_fn.name} that is not placed on the image yet: animate DE-CAM's "
                               "search (-m decam), or explain -m gradcam for the final map")
    attention = [m for m in names if m in ATTENTION_METHODS]
    if attention:  # a model without global attention stops here, once
        bind_all(attention, None, {}, clf.input_size, clf=clf)
    if any(METHODS[m].whitebox for m in names):
        select_layers(clf, layers)  # a bad --layers or a model without 4-D maps stops here, once
    announce_backend(clf)
    executor = start_executor(clf, ckw, ray)   # before anything is written: a bad --ray writes nothing
    run = dict(layers=layers, target=target, budget=budget, seed=seed, road=road)
    files = dict(norm=norm, fps=fps, fmt=fmt, save_maps=save_maps)

    def tasks():
        for item in todo:
            src = ImageSource.of(item.name, item.path, remote=executor.remote)
            yield item, Work(animate_unit, (src, tuple(names), item.stem(), run, per, files), item.name)

    failed = made = 0
    t0 = time.perf_counter()
    try:
        out = ensure_dir(out_dir)
        skipped = note_skipped(items)
        todo = [it for it in items if not it.skip]
        with image_bar(len(todo), ",".join(names), quiet) as bar:
            for item, got in executor.imap(tasks()):
                bar.update(1)
                got = got if isinstance(got, list) else [got] * len(names)
                for name, res in zip(names, got):
                    if isinstance(res, Failed):
                        bar.write(f"error: {res.error}", file=sys.stderr)
                        failed += 1
                        continue
                    summary, data = res
                    written = write_files(data, out)
                    made += 1
                    yb = summary["ybroad"]
                    extra = (f", ybROAD max {yb['max']:+.3f} at {yb['argmax']} ({yb['argmax_name']}), "
                             f"mean {yb['mean']:+.3f}" if yb else "")
                    bar.write(f"{item.name} {name}: {summary['label']} ({summary['score']:.3f}), "
                              f"{summary['frames']} frames, {summary['queries']} queries{extra} -> "
                              f"{', '.join(p.name for p in written.values())}")
    finally:
        executor.close()
    click.echo(run_summary(len(todo), made, failed, executor.retries, time.perf_counter() - t0, executor.workers,
                           skipped=len(skipped)), err=True)
    if failed:
        sys.exit(1)
