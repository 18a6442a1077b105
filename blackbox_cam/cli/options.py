"""Click options shared by every command, defined once (model loading, methods, budget, seed).

Method names, budgets and method options come from the registry
(:data:`blackbox_cam.methods.METHODS`): :func:`methods_option`, :func:`run_options` and
:func:`method_options` read the declarations, so a new method or option appears on every
command without touching the CLI.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import click

from ..model.backends import AUTO_REASON, CHOICES as BACKENDS, DEVICES
from ..model.geometry import RESIZE_MODES
from ..methods import METHODS, Option, parse_methods
from ..model.preprocess import LAYOUTS, PRESETS


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """How to read the model: preprocessing, layout, output, device, backend, batch size, labels."""
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
        click.option("--backend", type=click.Choice(list(BACKENDS)), default="auto", show_default=True,
                     help="Inference engine. auto: ONNX Runtime, on CUDA when a GPU initialises, else on CPU "
                          "(measured faster than OpenVINO there); openvino needs pip install \"blackbox-cam[openvino]\"."),
        click.option("--resize", type=click.Choice(list(RESIZE_MODES)), default=None,
                     help="How images reach the input size: squash (whole image), crop (shorter side to "
                          "input/crop-pct, centre crop) or letterbox (fit, pad) (default: sidecar, else squash)."),
        click.option("--crop-pct", type=click.FloatRange(min=0, max=1, min_open=True), default=None,
                     help="Kept fraction of the resized image, 0.875 = 224 of 256 (default: sidecar, else 0.875 for crop, 1 otherwise)."),
        click.option("--sidecar", type=click.Path(dir_okay=False), default=None,
                     help="Preprocessing file: ours, a Hugging Face preprocessor_config.json or a timm config "
                          "(default: <model>.json, else preprocessor_config.json beside the model)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Images per model call (default: chosen from the input size)."),
        click.option("--preprocess-fn", "preprocess_fn", default=None, metavar="FILE.py:NAME",
                     help="The vendor's own preprocessing function: one H x W x 3 uint8 RGB image -> the model's "
                          "input. It replaces the resize/normalisation keys; importing it runs its code "
                          "(default: the sidecar's \"preprocess_fn\", relative to the sidecar)."),
        click.option("--postprocess-fn", "postprocess_fn", default=None, metavar="FILE.py:NAME",
                     help="The vendor's function from the model's raw outputs (a list, one array per output) "
                          "to the scores to explain [N, classes] (default: the sidecar's \"postprocess_fn\")."),
        click.option("--score", "score", type=click.Choice(["probability", "log-odds"]), default=None,
                     help="What the black-box methods and metrics explain: the target's probability, or its "
                          "log-odds (from the logits before the graph's final Softmax; keeps moving where a "
                          "sure model's probability has saturated) (default: the sidecar's \"score\", else probability)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What to explain and how hard to try: target, budget, seed."""
    opts = [
        click.option("--target", default="top1", show_default=True, metavar="top1|INDEX|LABEL",
                     help="Class to explain: the top-1 prediction, a class index or a label name."),
        click.option("--budget", type=BUDGET, default=None, metavar="N|auto", help=budget_help()),
        click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same map."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def classifier_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the model options out of a command's keyword arguments."""
    return {k: kw.pop(k) for k in ("preprocess", "bgr", "layout", "output", "labels", "device", "backend",
                                    "batch_size", "resize", "crop_pct", "sidecar", "preprocess_fn",
                                    "postprocess_fn", "score") if k in kw}


def load_classifier(model: Any, kw: dict[str, Any]) -> Any:
    """The :class:`~blackbox_cam.model.runtime.Classifier` the model options describe (popped from ``kw``)."""
    from ..model.runtime import Classifier

    return Classifier(model, **classifier_kwargs(kw))


def detector_thresholds(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Which detections a detector reports (Ultralytics' defaults); a classifier refuses them."""
    opts = [
        click.option("--conf", type=float, default=None,
                     help="Detectors: keep detections scoring above this, in [0, 1] (default 0.25, Ultralytics')."),
        click.option("--iou", type=float, default=None,
                     help="Detectors: NMS IoU threshold in [0, 1] (default 0.45, Ultralytics')."),
        click.option("--max-detections", type=int, default=None,
                     help="Detectors: at most this many detections per image, highest scores first (default 300)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def detector_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """How a detector's detections are selected: :func:`detector_thresholds` and ``--detection``."""
    return click.option("--detection", type=int, default=None, metavar="K",
                        help="Detectors: only the K-th detection of each image (0 = the highest score).")(
        detector_thresholds(fn))


def detector_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop :func:`detector_options`' thresholds from ``kw`` (those given), checked before any query."""
    given = {k: kw.pop(k) for k in ("conf", "iou", "max_detections")}
    given = {k: v for k, v in given.items() if v is not None}
    if given:
        from ..model.detector import check_thresholds
        check_thresholds(given.get("conf", 0.25), given.get("iou", 0.45), given.get("max_detections", 300))
    return given


def announce_backend(clf: Any) -> None:
    """Say once, on stderr, which backend and device run the model (after the options are checked,
    so a bad option is still the only line)."""
    why = f" ({AUTO_REASON})" if clf.backend_request == "auto" and clf.session.device == "cpu" else ""
    task = clf.signature.task
    what = f", {task} ({clf.signature.detector.kind})" if task == "detector" else ""
    click.echo(f"backend: {clf.session.describe()}, batch {clf.batch_size}{what}{why}", err=True)
    for note in getattr(clf, "notes", ()):
        click.echo(note, err=True)
    announce_pipeline(clf)


def announce_pipeline(clf: Any) -> None:
    """The trust line: which vendor files were imported (their code ran, like a ``conftest.py``),
    what was probed, the labels' format and the score explained (stderr)."""
    for f in (getattr(clf, "preprocess_fn", None), getattr(clf, "postprocess_fn", None)):
        if f is not None and f.file is not None:
            click.echo(f"imported {f.file} for {f.kind} {f.name.split(':')[-1]} (sha256 {f.sha256[:16]}): its code "
                       "ran, like a conftest.py; use only a sidecar you trust", err=True)
    if getattr(clf, "preprocess_fn", None) is not None:
        click.echo(f"pipeline: {clf.describe_pipeline()}", err=True)
    if getattr(clf, "labels_format", None) and clf.labels_format != "one name per line":
        click.echo(f"labels: {clf.labels_source} read as {clf.labels_format}", err=True)
    if getattr(clf, "score_kind", "probability") != "probability":
        click.echo(f"score: {clf.score_source}", err=True)



class BudgetType(click.ParamType):
    """``--budget``: a number of queries, or ``auto`` (run in rounds until the map is stable;
    :class:`blackbox_cam.methods.uncertainty.AutoBudget`)."""

    name = "budget"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) or value is None:
            return value
        if str(value).strip().lower() == "auto":
            return "auto"
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of queries or 'auto'", param, ctx)


BUDGET = BudgetType()


def budget_help() -> str:
    """``--budget``'s help, with each black-box method's default from the registry."""
    parts = [f"{s.name} {s.default_budget}" if s.default_budget else f"{s.name} {s.budget_note or 'no limit'}"
             for s in METHODS.values() if not s.whitebox]
    return ("Hard limit on model queries per image, the unmasked prediction included (default per method: "
            f"{', '.join(parts)}; white-box methods take none). 'auto': DE-CAM and RISE run in rounds and stop "
            "when the map is stable (--stability), at most --max-budget (default: the method's budget).")


def methods_option(default: str, *aliases: str, help: str | None = None) -> Callable[..., Any]:
    """``--methods/-m NAME[,NAME...]``, parsed into registered names (``aliases``: old spellings)."""
    def parse(_ctx: click.Context, _param: click.Parameter, value: str) -> list[str]:
        return parse_methods(value)

    return click.option("--methods", *aliases, "-m", "methods", default=default, show_default=True,
                        metavar="NAME[,NAME...]", callback=parse,
                        help=help or f"Saliency method(s), comma-separated: {', '.join(METHODS)}.")


_CLICK_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}


def _declared() -> dict[str, list[tuple[str, Option]]]:
    """Each CLI-visible option name -> the methods declaring it, in registry order."""
    out: dict[str, list[tuple[str, Option]]] = {}
    for spec in METHODS.values():
        for opt in spec.options:
            if opt.cli:
                out.setdefault(opt.name, []).append((spec.name, opt))
    return out


def _help(decls: Sequence[tuple[str, Option]]) -> str:
    """One help text for an option several methods declare: who takes it, defaults, valid values."""
    def note(default: str, o: Option) -> str:
        return "; ".join(t for t in (default, o.describe()) if t)

    first = decls[0][1]
    if any(o.help != first.help or o.describe() != first.describe() for _, o in decls):
        return " ".join(f"{m}: {o.help.rstrip('.')} ({note('' if o.default is None else f'default {o.default}', o)})."
                        for m, o in decls)
    defaults = {o.default for _, o in decls}
    given = [f"{m} {o.default}" for m, o in decls if o.default is not None]
    default = (f"default {first.default}" if len(defaults) == 1 and first.default is not None
               else f"default {', '.join(given)}" if given else "")
    tail = note(default, first)
    return f"{', '.join(m for m, _ in decls)}: {first.help.rstrip('.')}" + (f" ({tail})." if tail else ".")


def method_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One flag per declared method option, from the registry; every default is None (unset), so
    only what the user gives reaches the methods (:func:`method_kwargs`), and the registry says
    when a chosen method does not take it."""
    for name, decls in reversed(list(_declared().items())):
        opt = decls[0][1]
        if any(o.type is not opt.type or o.cli_flag != opt.cli_flag for _, o in decls):
            raise TypeError(f"option {name!r} is declared with different types or flags by "
                            f"{', '.join(m for m, _ in decls)}; one name, one meaning")
        if opt.type is bool:
            flag = opt.cli_flag[2:]
            fn = click.option(f"--{flag}/--no-{flag}", name, default=None, help=_help(decls))(fn)
        else:
            fn = click.option(opt.cli_flag, name, type=_CLICK_TYPES[opt.type], default=None,
                              help=_help(decls))(fn)
    return fn


def method_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the method options out of a command's keyword arguments: the ones the user gave."""
    return {k: v for k in _declared() if (v := kw.pop(k, None)) is not None}


# -- where the per-image work runs (every dataset command) ----------------------------------------
RAY_KEYS = ("ray", "workers", "ray_start_timeout", "ray_gpus_per_worker")


def ray_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--ray [ADDRESS]``, ``--workers``, ``--ray-start-timeout``, ``--ray-gpus-per-worker``: the
    same meaning on every dataset command (one decorator; pop them with :func:`ray_kwargs`)."""
    from ..jobs.executors import DEFAULT_START_TIMEOUT
    opts = [
        click.option("--ray", "ray", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
                     help="Run the per-image work as Ray tasks: --ray alone starts a local Ray runtime sized to "
                          "this machine; --ray ADDRESS joins a cluster (ray://head:10001, head:6379 or auto). "
                          "Writes the same files as a run without it (pip install 'blackbox-cam[ray]')."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="With --ray: worker processes (default: one per CPU of the cluster, or one per GPU "
                          "when it has GPUs)."),
        click.option("--ray-start-timeout", type=click.FloatRange(min=0), default=DEFAULT_START_TIMEOUT,
                     show_default=True, metavar="SECONDS",
                     help="With --ray (local): keep trying to start Ray this long (Ray itself gives its raylet "
                          "a fixed 30 s, which a loaded machine can miss)."),
        click.option("--ray-gpus-per-worker", type=click.FloatRange(min=0), default=None, metavar="G",
                     help="With --ray: GPUs each worker declares (default: 1 when the cluster has GPUs, each "
                          "worker then runs ONNX Runtime's CUDA provider; 0.5 = two workers per GPU; 0 = CPU "
                          "workers only)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def ray_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the Ray options out of a command's keyword arguments (for :func:`start_executor`)."""
    return {k: kw.pop(k) for k in RAY_KEYS if k in kw}


def start_executor(clf: Any, model_kwargs: dict[str, Any], ray: dict[str, Any]) -> Any:
    """The executor the Ray options ask for (in-process without ``--ray``); says on stderr what
    runs where. Called before anything is written, so a bad address writes nothing."""
    from ..jobs.executors import make_executor

    address = ray.get("ray")
    ex = make_executor(clf, model_kwargs, address, workers=ray.get("workers"),
                       gpus_per_worker=ray.get("ray_gpus_per_worker"),
                       **({"start_timeout": ray.get("ray_start_timeout")} if address else {}))
    for line in ex.describe():
        click.echo(line, err=True)
    return ex


def image_bar(total: int, desc: str, quiet: bool = False):
    """The run's progress bar on stderr: images done / total, the rate and the ETA (tqdm; silent
    when stderr is not a terminal)."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="img", leave=False, disable=True if quiet else None, file=sys.stderr,
                dynamic_ncols=True)


def note_skipped(items: Sequence[Any]) -> list[Any]:
    """One note line on stderr for the non-image files found in folders (README, LICENSE.md,
    .DS_Store, a CSV): skipped, never counted as failed images. Returns the skipped items."""
    skipped = [it for it in items if getattr(it, "skip", False)]
    if skipped:
        names = ", ".join(it.name for it in skipped[:5]) + (f", ... ({len(skipped)} in all)" if len(skipped) > 5 else "")
        click.echo(f"note: skipped {len(skipped)} non-image file(s): {names}", err=True)
    return skipped
