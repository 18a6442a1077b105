"""Click options shared by every command, defined once (model loading, budget, seed)."""
from __future__ import annotations

from typing import Any, Callable

import click

from ..preprocess import LAYOUTS, PRESETS
from ..runtime import DEVICES


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """How to read the model: preprocessing, layout, output, device, batch size, labels."""
    opts = [
        click.option("--preprocess", type=click.Choice(list(PRESETS)), default=None,
                     help="Pixel normalisation preset (default: the sidecar <model>.json, else imagenet)."),
        click.option("--bgr/--rgb", "bgr", default=None, help="Channel order the model expects (default: sidecar, else RGB)."),
        click.option("--layout", type=click.Choice(list(LAYOUTS), case_sensitive=False), default=None,
                     help="Input layout (default: detected from the input shape)."),
        click.option("--output", "output", default=None, metavar="NAME|INDEX",
                     help="Which model output holds the class scores (models with several outputs)."),
        click.option("--labels", type=click.Path(dir_okay=False), default=None,
                     help="Text file with one class name per line (default: from the sidecar)."),
        click.option("--device", type=click.Choice(list(DEVICES)), default="auto", show_default=True,
                     help="auto uses CUDA only when onnxruntime-gpu's CUDA provider initialises."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Images per model call (default: chosen from the input size)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What to explain and how hard to try: target, budget, seed."""
    opts = [
        click.option("--target", default="top1", show_default=True, metavar="top1|INDEX|LABEL",
                     help="Class to explain: the top-1 prediction, a class index or a label name."),
        click.option("--budget", type=int, default=None, metavar="N",
                     help="Hard limit on model queries per image (default per method: decam 2000, rise 4000, "
                          "occlusion: 1/8-image windows at half-window stride)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same map."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def classifier_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the model options out of a command's keyword arguments."""
    return {k: kw.pop(k) for k in ("preprocess", "bgr", "layout", "output", "labels", "device", "batch_size")}

