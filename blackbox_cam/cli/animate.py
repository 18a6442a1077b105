"""``blackbox-cam animate``: CAManim, the explanation through every layer or through the search.

Parses options, loads the model, and calls :func:`blackbox_cam.jobs.animate.job.animate` and
:func:`blackbox_cam.jobs.animate.job.write_animation`; no map or metric code lives here.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import BlackboxCamError
from ..methods import METHODS, bind_all, split_options
from ._group import progress
from .options import (announce_backend, load_classifier, method_kwargs, method_options, methods_option, model_options,
                      run_options)

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
@model_options
def animate(model: Path, images: tuple[Path, ...], methods: list[str], layers: str, norm: str, fps: float, fmt: str,
            save_maps: bool, road: bool, target: str, budget: int | None, seed: int, out_dir: Path,
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
    from ..jobs.animate.job import ATTENTION_METHODS, animate as run_animation, select_layers, write_animation
    from ..jobs.dataset import expand_inputs
    from ..pictures import movie
    from ..io.output import ensure_dir

    names = methods
    bad = [m for m in names if m not in ANIMATABLE]
    if bad:
        raise BlackboxCamError(f"-m {', '.join(bad)}: cannot be animated; use a white-box method "
                               f"({', '.join(ANIMATABLE[:-1])}) or decam")
    given = method_kwargs(kw)
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
    out = ensure_dir(out_dir)
    clf = load_classifier(model, kw)
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
    failed = 0
    for item in items:
        try:
            image = item.load()
        except BlackboxCamError as e:
            click.echo(f"error: {e}", err=True)
            failed += 1
            continue
        for name in names:
            bar = progress(None, f"{item.name} {name}")
            clf.on_queries = bar.update
            try:
                anim = run_animation(clf, image, name, layers=layers, target=target, budget=budget, seed=seed,
                                     road=road, **per[name])
                written = write_animation(anim, out, item.stem(), norm=norm, fps=fps, fmt=fmt,
                                          save_maps=save_maps)
            except BlackboxCamError as e:
                click.echo(f"error: {item.path}: {name}: {e}", err=True)
                failed += 1
                continue
            finally:
                bar.close()
                clf.on_queries = None
            yb = anim.ybroad
            summary = (f", ybROAD max {yb['max']:+.3f} at {yb['argmax']} ({yb['argmax_name']}), "
                       f"mean {yb['mean']:+.3f}" if yb else "")
            click.echo(f"{item.name} {name}: {anim.label} ({anim.score:.3f}), {len(anim.frames)} frames, "
                       f"{anim.queries} queries{summary} -> {', '.join(p.name for p in written.values())}")
    if failed:
        sys.exit(1)
