"""``blackbox-cam``: the command line, a thin layer over the Python API.

Each command parses its options, loads the model through :class:`blackbox_cam.runtime.Classifier`
and calls the library; method choices come from the registry so the CLI cannot drift from
the API. User errors print one line (``error: ...``) and exit non-zero without a traceback.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from . import __version__
from .cli_options import classifier_kwargs, model_options, run_options
from .errors import BlackboxCamError
from .masks import BASELINES
from .methods import METHODS


class _Group(click.Group):
    """Turns :class:`BlackboxCamError` into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BlackboxCamError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="blackbox-cam")
def main() -> None:
    """Explain what an ONNX image classifier looks at, from the .onnx file alone.

    \b
    Black-box methods (model outputs only):  decam, rise, occlusion
    White-box methods (gradients from the ONNX graph): gradcam, gradcam++, hirescam, xgradcam, layercam
    \b
    Example:
      blackbox-cam explain models/efficientnet_lite0.onnx models/images/chelsea.png --out out/
    Preprocessing is read from a sidecar <model>.json next to the model; flags override it.
    """


def _method_list(value: str) -> list[str]:
    names = [m.strip() for m in value.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise click.BadParameter(f"{', '.join(bad) or value!r} not a method; choose from {', '.join(METHODS)} "
                                 "(comma-separated for several)")
    return names


def _progress(total: int | None, desc: str):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="q", leave=False, disable=None, file=sys.stderr)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
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
    """Explain IMAGES with MODEL and write saliency maps.

    For every image and method this writes <stem>_<method>.npy (float32, image size, values
    0..1), <stem>_<method>.png (heat-map overlay) and a record in explain.json. An image that
    fails is recorded with its error and the others go on; the exit code is 1 if any failed.

    \b
    Examples:
      blackbox-cam explain model.onnx cat.png                     # DE-CAM, 2000 queries
      blackbox-cam explain model.onnx imgs/*.jpg -m decam,rise --budget 1000 --seed 1
      blackbox-cam explain model.onnx cat.png -m gradcam --target "tabby, tabby cat"
    """
    from .explain import explain_image
    from .images import load_image
    from .output import ensure_dir, write_json, write_npy, write_png
    from .render import overlay
    from .runtime import Classifier

    names = _method_list(methods)
    if budget is not None and budget <= 0:
        raise BlackboxCamError(f"--budget must be a positive number of model queries, got {budget}")
    out = ensure_dir(out_dir)
    clf = Classifier(model, **classifier_kwargs(kw))
    records: list[dict[str, Any]] = []
    failed = 0
    for image_path in images:
        try:
            image = load_image(image_path)
        except BlackboxCamError as e:
            click.echo(f"error: {e}", err=True)
            records.extend({"model": str(model), "image": str(image_path), "method": m, "error": str(e)} for m in names)
            failed += 1
            write_json(out / "explain.json", records)
            continue
        for name in names:
            spec = METHODS[name]
            opts: dict[str, Any] = {"layer": layer} if spec.whitebox else {
                k: v for k, v in (("grid", grid), ("baseline", baseline), ("window", window)) if v is not None}
            rec: dict[str, Any] = {"model": str(model), "image": str(image_path), "method": name}
            t0 = time.perf_counter()
            bar = _progress(budget, f"{image_path.name} {name}")
            clf.on_queries = bar.update
            try:
                res = explain_image(clf, image, name, target=target, budget=budget, seed=seed, **opts)
            except BlackboxCamError as e:
                click.echo(f"error: {image_path}: {e}", err=True)
                rec["error"] = str(e)
                failed += 1
            else:
                stem = out / f"{image_path.stem}_{name}"
                write_npy(stem.with_suffix(".npy"), res.saliency)
                write_png(stem.with_suffix(".png"), overlay(image, res.saliency))
                ex = res.explanation
                rec.update({"predicted": res.predicted, "predicted_label": clf.label(res.predicted),
                            "predicted_score": res.predicted_score, "label": clf.label(res.target),
                            "score": res.score, "target": res.target, "params": ex.params,
                            "queries": ex.queries, "seconds": round(time.perf_counter() - t0, 3),
                            "npy": stem.with_suffix(".npy").name, "png": stem.with_suffix(".png").name})
                click.echo(f"{image_path.name} {name}: {clf.label(res.target)} ({res.score:.3f}), "
                           f"{ex.queries} queries, {rec['seconds']:.1f}s -> {stem.with_suffix('.png')}")
            finally:
                bar.close()
                clf.on_queries = None
            records.append(rec)
            write_json(out / "explain.json", records)
    if failed:
        sys.exit(1)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--all", "show_all", is_flag=True, help="List every float intermediate tensor, not only 4-D maps.")
def layers(model: Path, show_all: bool) -> None:
    """List MODEL's candidate layers for the white-box methods; * marks the default."""
    from .methods.gradcam import list_layers
    from .runtime import load_onnx

    rows = list_layers(load_onnx(model))
    if not show_all:
        rows = [r for r in rows if r.shape is not None and len(r.shape) == 4]
    for r in rows:
        shape = "x".join("?" if d is None else str(d) for d in (r.shape or ()))
        click.echo(f"{'*' if r.is_default else ' '} {r.name}\t{r.op_type}\t{shape}\t{r.scope or ''}")


def _add_optional_commands() -> None:
    try:
        from .cli_compare import compare
    except ImportError:  # pragma: no cover
        return
    main.add_command(compare)


_add_optional_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
