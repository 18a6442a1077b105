"""Compare saliency methods on the same images with the same target, and score every map.

:func:`compare_images` is the library behind ``blackbox-cam compare``: for each image it fixes
the target once (top-1 of the unmasked image unless given), runs every method through
:func:`blackbox_cam.explainer.pipeline.explain_image`, and scores each map with the metrics of
:mod:`blackbox_cam.metrics`:

* faithfulness at the model input resolution: deletion / insertion AUC (RISE protocol) and
  ROAD (combined, MoRF, LeRF);
* agreement with a reference map (the first white-box method listed, e.g. ``gradcam``):
  Spearman rank correlation and top-k % IoU;
* localisation, when a box is known for the image, at the original resolution in the box's own
  pixel coordinates: pointing game and energy in the box.

A failing image (unreadable file, box outside the image) or a failing method on an image is
recorded in :attr:`CompareResult.failures` and the rest go on. :func:`summarise` gives each
method's mean and 95 % t-interval over images. Writing files is :mod:`blackbox_cam.jobs.compare.report`'s job.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

from ... import metrics
from ...errors import BlackboxCamError
from ..dataset import Item, MapCache, expand_inputs, explain_items, read_csv_rows
from ...explainer.pipeline import Result, explain_scored, map_to_image, resolve_target, score_image
from ...methods import METHODS, bind_all, parse_methods
from ...pictures.display import Shows, stack

#: Per-row metric keys, in report order; ``higher`` says which direction is better.
METRICS: dict[str, dict[str, Any]] = {
    "deletion_auc": {"higher": False, "label": "Deletion AUC", "range": (0.0, 1.0)},
    "insertion_auc": {"higher": True, "label": "Insertion AUC", "range": (0.0, 1.0)},
    "road": {"higher": True, "label": "ROAD (LeRF-MoRF)/2", "range": (-1.0, 1.0)},
    "road_morf": {"higher": False, "label": "ROAD MoRF", "range": (-1.0, 1.0)},
    "road_lerf": {"higher": True, "label": "ROAD LeRF", "range": (-1.0, 1.0)},
    "pointing_game": {"higher": True, "label": "Pointing game", "range": (0.0, 1.0)},
    "energy_in_box": {"higher": True, "label": "Energy in box", "range": (0.0, 1.0)},
    # issue 21: split-half stability of a black-box map (methods/uncertainty.py); not a faithfulness score
    "stability": {"higher": True, "label": "Stability", "range": (0.0, 1.0)},
    "queries": {"higher": False, "label": "Queries", "range": (0.0, math.inf)},
    "seconds": {"higher": False, "label": "Seconds", "range": (0.0, math.inf)},
}
BOX_COLUMNS = ("image", "x0", "y0", "x1", "y1")


@dataclass
class MetricSettings:
    """Options of the metrics (defaults as in their papers; see docs/metrics.md)."""

    road: bool = True
    tolerance: float = 15.0      # pointing game, pixels of the original image
    topk: float = 20.0           # top-k % for the IoU agreement
    seed: int = 0                # tie-breaking and ROAD noise
    step: int | None = None      # deletion/insertion: pixels per step (default: the metric's)


@dataclass
class ImageResult:
    """What one image produced: its maps (at original and model resolution) for the panels."""

    name: str
    path: str
    image: np.ndarray | None
    target: int | None
    label: str | None
    maps: dict[str, np.ndarray] = field(default_factory=dict)         # original resolution, [0, 1]
    model_maps: dict[str, np.ndarray] = field(default_factory=dict)   # model input resolution
    box: tuple[float, float, float, float] | None = None
    results: dict[str, Result] = field(default_factory=dict, repr=False)  # each method's Result (save_maps)
    size: tuple[int, int] | None = None      # (H, W) of the file (maps are at the working size)
    stem: str | None = None                  # file-name stem of its saved maps (as explain names them)
    detection: int | None = None             # a detector's: the detection's index in its image (box is its box)

    def rows_of(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The report rows of this image (and, on a detector, of this detection)."""
        return [r for r in rows if r["image"] == self.name and r.get("detection") == self.detection]


@dataclass(repr=False)
class CompareResult(Shows):
    """Rows (one per image x method), failures, per-image results and the settings used.

    Shows itself (:class:`~blackbox_cam.pictures.display.Shows`): its picture is every image's
    panel (the report's ``panels/``), one under the other; its text, each method's mean scores.
    """

    rows: list[dict[str, Any]]
    failures: list[dict[str, str]]
    images: list[ImageResult]
    methods: list[str]
    reference: str | None
    settings: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)   # non-image files found in folders

    @property
    def agreement_keys(self) -> list[str]:
        if self.reference is None:
            return []
        return [f"spearman_vs_{self.reference}", f"iou_vs_{self.reference}"]

    @property
    def metric_keys(self) -> list[str]:
        """Numeric columns present in the rows, in report order."""
        keys = ["deletion_auc", "insertion_auc"]
        if self.settings.get("road", True):
            keys += ["road", "road_morf", "road_lerf"]
        keys += self.agreement_keys
        if any(r.get("pointing_game") is not None for r in self.rows):
            keys += ["pointing_game", "energy_in_box"]
        if any(r.get("stability") is not None for r in self.rows):
            keys += ["stability"]
        return keys + ["queries", "seconds"]

    def picture(self):
        """Each image's panel (the image, then every method's overlay with its scores), stacked."""
        from .panels import make_panel

        panels = [make_panel(ir, self) for ir in self.images if ir.image is not None and ir.maps]
        return stack(panels) if panels else None

    def describe(self) -> str:
        summary = summarise(self)
        parts = []
        for m in self.methods:
            s = summary[m]
            if s["deletion_auc"]["n"]:
                parts.append(f"{m} deletion {s['deletion_auc']['mean']:.3f}, "
                             f"insertion {s['insertion_auc']['mean']:.3f}")
        n = len(self.images)
        fails = f", {len(self.failures)} failure(s)" if self.failures else ""
        return f"compare: {n} image{'s' if n != 1 else ''}{fails}; means: " + ("; ".join(parts) or "none")

    def __repr__(self) -> str:
        return f"<CompareResult {self.describe()}>"


# -- inputs ------------------------------------------------------------------------------------
def choose_reference(methods: Sequence[str], reference: str | None = None) -> str | None:
    """The map others are compared with: ``reference`` if given, else the first white-box method
    listed, else the first method (so agreement columns always exist when two or more are run)."""
    if reference is not None:
        if reference not in methods:
            raise BlackboxCamError(f"--reference {reference!r} is not among --methods ({', '.join(methods)})")
        return reference
    white = [m for m in methods if METHODS[m].whitebox]
    if white:
        return white[0]
    return methods[0] if len(methods) > 1 else None


def read_boxes(path: str | os.PathLike, images: Iterable[str | os.PathLike]) -> dict[str, tuple[float, ...]]:
    """Boxes by image file name from a CSV with header ``image,x0,y0,x1,y1`` (extra columns ignored).

    Coordinates are pixels of the original image, ``x1``/``y1`` exclusive. Every row must name one
    of ``images`` (by file name) at most once and hold a non-empty box; otherwise a
    :class:`BlackboxCamError` names the file and the row (line number).
    """
    p = Path(path)
    known = {Path(i).name for i in images}
    boxes: dict[str, tuple[float, ...]] = {}
    for line, row in read_csv_rows(p, "boxes", BOX_COLUMNS, f"{','.join(BOX_COLUMNS)} (extra columns are ignored)"):
        name = row["image"]
        if name not in known:
            raise BlackboxCamError(f"{p}, line {line}: image {name!r} is not one of the images given "
                                   f"({', '.join(sorted(known))})")
        if name in boxes:
            raise BlackboxCamError(f"{p}, line {line}: a second box for {name!r}; give one box per image")
        try:
            x0, y0, x1, y1 = (float(row[c]) for c in ("x0", "y0", "x1", "y1"))
        except ValueError:
            raise BlackboxCamError(f"{p}, line {line}: x0,y0,x1,y1 must be numbers, got "
                                   f"{[row[c] for c in ('x0', 'y0', 'x1', 'y1')]}") from None
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or min(x0, y0) < 0 or x1 <= x0 or y1 <= y0:
            raise BlackboxCamError(f"{p}, line {line}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is not valid; "
                                   "need 0 <= x0 < x1 and 0 <= y0 < y1")
        boxes[name] = (x0, y0, x1, y1)
    return boxes


# -- running -------------------------------------------------------------------------------------
def score_map(clf, x: np.ndarray, saliency: np.ndarray, target: int, settings: MetricSettings,
              box: tuple[float, float, float, float] | None = None) -> dict[str, float]:
    """The metrics of one model-resolution map: deletion/insertion AUC, ROAD (``settings.road``)
    and, with a ``box`` in the map's pixels, :func:`score_box` (queries go through ``clf.probabilities``)."""
    prob = clf.probabilities
    out = {
        "deletion_auc": metrics.deletion(prob, x, saliency, target, step=settings.step, seed=settings.seed).auc,
        "insertion_auc": metrics.insertion(prob, x, saliency, target, step=settings.step, seed=settings.seed).auc,
    }
    if settings.road:
        r = metrics.road(prob, x, saliency, target, seed=settings.seed)
        out.update(road=r.combined, road_morf=r.morf, road_lerf=r.lerf)
    if box is not None:
        out.update(score_box(saliency, box, settings.tolerance))
    return out


def score_box(saliency: np.ndarray, box: tuple[float, float, float, float], tolerance: float) -> dict[str, float]:
    """Localisation of a map against a box in the map's own pixels: pointing game, energy in box."""
    return {"pointing_game": float(metrics.pointing_game(saliency, box, tolerance=tolerance)),
            "energy_in_box": metrics.energy_in_region(saliency, box)}


def compare_images(clf, images: Sequence[str | os.PathLike | Item], methods: Sequence[str], *,
                   target: str | int | None = None, budget: int | None = None, seed: int = 0,
                   boxes: dict[str, tuple[float, ...]] | None = None, reference: str | None = None,
                   settings: MetricSettings | None = None, options: Mapping[str, Any] | None = None,
                   progress: Callable[[str], None] | None = None, cache: MapCache | None = None,
                   executor: Any = None, on_image: Callable[[Any], None] | None = None) -> CompareResult:
    """Run ``methods`` on ``images`` with a shared target per image and score every map.

    Parameters
    ----------
    clf : a :class:`blackbox_cam.model.runtime.Classifier`.
    images : image files, folders, manifest CSVs (see :func:`blackbox_cam.jobs.dataset.expand_inputs`)
        or already expanded :class:`~blackbox_cam.jobs.dataset.Item`.
    methods : registry names (see :func:`blackbox_cam.methods.parse_methods`).
    target : ``None``/``"top1"`` (each image's top-1 class), a class index or a label.
    budget, seed : passed to every method (white-box methods ignore the budget).
    boxes : ``{file name: (x0, y0, x1, y1)}`` from :func:`read_boxes`; enables the pointing game
        and energy in box for those images.
    reference : method the others are compared with (default :func:`choose_reference`).
    settings : metric options.
    options : method options (``{"grid": 6}``), each given to the methods that declare it; they
        and the budget are checked before any image is read.
    progress : called with one line per finished step (the CLI echoes it).
    cache : a :class:`~blackbox_cam.jobs.dataset.MapCache`: maps already made are reused (the
        metrics are always recomputed).
    executor : where each image's maps and scores are made (:mod:`blackbox_cam.jobs.executors`;
        default in this process): :func:`compare_unit` runs there, so a Ray run gives the same rows.
    on_image : called once per image as its results arrive (a progress bar).
    """
    methods = parse_methods(list(methods))
    calls = bind_all(methods, budget, options, clf=clf)
    ref = choose_reference(methods, reference)
    settings = settings or MetricSettings(seed=seed)
    boxes = boxes or {}
    say = progress or (lambda _msg: None)
    items = [i for i in images if isinstance(i, Item)]
    if len(items) != len(images):
        items = expand_inputs(images)
    if target is not None and str(target).lower() != "top1":
        target = resolve_target(clf, target)        # a named target is resolved once, up front
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    results: list[ImageResult] = []
    skipped: list[dict[str, str]] = []
    for item in items:
        if item.skip:  # a non-image file found in a folder: listed, not a failure
            skipped.append({"image": item.name, "reason": item.error or ""})
            say(item.error or f"{item.name}: skipped")
    todo = [it for it in items if not it.skip]
    stream = explain_items(clf, todo, calls, target=None if target in (None, "top1") else target, seed=seed,
                           cache=cache, executor=executor, unit=compare_unit, unit_args=(tuple(methods), settings))
    for im in stream:
        item = im.item
        name, path = item.name, item.path
        if on_image is not None:
            on_image(im)
        try:
            if im.error is not None:
                raise BlackboxCamError(im.error)
            if im.extra is None:  # the unit itself failed (e.g. its worker died 3 times): every method says why
                raise BlackboxCamError(next(iter(im.errors.values()), f"{name}: no result"))
            box = _scale_box(path, boxes.get(path.name), im.image.shape[:2], im.size)
        except Exception as e:  # a bad image is recorded; the others go on
            failures.append({"image": name, "method": "", "error": _message(e)})
            say(f"{name}: failed ({_message(e)})")
            continue
        tgt = int(im.extra["target"])
        ir = ImageResult(name, str(path), im.image, tgt, clf.label(tgt), box=box, size=im.size,
                         stem=path.stem if item.origin == "arg" else item.stem())
        results.append(ir)
        for m in methods:
            scores = im.extra["metrics"].get(m)
            err = im.errors.get(m) or (scores if isinstance(scores, str) else None)
            if err is not None:  # one method failing must not lose the others' results
                failures.append({"image": name, "method": m, "error": err})
                say(f"{name} / {m}: failed ({err})")
                continue
            row = _row(ir, im.results[m][0], scores, settings,
                       in_image=getattr(clf, 'preprocess_fn', None) is not None)
            rows.append(row)
            say(f"{name} / {m}: deletion {row['deletion_auc']:.3f}, insertion {row['insertion_auc']:.3f} "
                f"({row['queries']} queries, {row['seconds']:.1f} s)")
        if ref is not None and ref in ir.model_maps:
            for row in rows:
                if row["image"] == name and row["method"] in ir.model_maps:
                    a, b = ir.model_maps[row["method"]], ir.model_maps[ref]
                    row[f"spearman_vs_{ref}"] = metrics.spearman(a, b)
                    row[f"iou_vs_{ref}"] = metrics.topk_iou(a, b, settings.topk, seed=settings.seed)
    setts = {"methods": list(methods), "reference": ref, "target": "top1" if target is None else str(target),
             "budget": budget, "seed": seed, "road": settings.road, "tolerance": settings.tolerance,
             "topk": settings.topk, "model": str(getattr(clf, "path", "")),
             "input_size": list(getattr(clf, "input_size", ())), "num_classes": getattr(clf, "num_classes", None),
             "boxes": bool(boxes)}
    if getattr(clf, "session", None) is not None and hasattr(clf.session, "record"):
        setts["backend"] = clf.session.record()
    return CompareResult(rows, failures, results, list(methods), ref, setts, skipped)


def _message(e: Exception) -> str:
    return str(e) if isinstance(e, BlackboxCamError) else f"{type(e).__name__}: {e}"


def compare_unit(clf, source: Any, requests: Sequence[Any], target: int | None, seed: int,
                 cached: Mapping[str, Any], methods: Sequence[str], settings: MetricSettings):
    """One image's work for compare, the same in-process and on a Ray worker: the missing maps
    (:func:`blackbox_cam.jobs.dataset.maps_unit`'s entries, one per request) and every method's
    faithfulness scores (:func:`score_map` on the model-resolution map; a method that failed
    gets its one-line error instead). Returns ``(entries, {"target", "metrics"})``."""
    from ..dataset import entry_of
    from ..executors import failed
    try:
        image, _size = source.read()
        scored = score_image(clf, image, target)
    except Exception as e:  # a bad image is recorded by the caller; the others go on
        return failed(source.name, e)
    entries: list[Any] = []
    maps = dict(cached)
    for req in requests:
        try:
            maps[req.method] = entry_of(explain_scored(clf, scored, req.call(), seed=seed))
        except Exception as e:  # one method failing must not lose the others
            maps[req.method] = failed(source.name, e)
        entries.append(maps[req.method])
    scores: dict[str, Any] = {}
    for m in methods:
        entry = maps.get(m)
        if entry is None or not hasattr(entry, "saliency"):
            continue
        t0 = time.perf_counter()
        try:
            work = np.asarray(entry.saliency, np.float32)
            if work.shape != scored.x.shape[1:]:  # a preprocess_fn's x is the image: the white-box map comes back
                work = np.clip(map_to_image(clf, work, image.shape[:2], model_space=True), 0.0, 1.0).astype(np.float32)
            scores[m] = score_map(clf, scored.x, work, scored.target, settings)
            scores[m]["metric_seconds"] = time.perf_counter() - t0
        except Exception as e:
            scores[m] = _message(e)
    return entries, {"target": int(scored.target), "metrics": scores}


def _row(ir: ImageResult, res: Result, scores: Mapping[str, float], settings: MetricSettings, *,
         in_image: bool = False) -> dict[str, Any]:
    """One row of the report: the unit's faithfulness scores, localisation in the image's own
    pixels (with a box), stability, queries; keeps the maps on ``ir`` for the panels."""
    method = res.explanation.method
    row: dict[str, Any] = {"image": ir.name, "method": method, "target": ir.target, "label": ir.label,
                           "target_probability": res.score}
    row.update({k: v for k, v in scores.items() if k != "metric_seconds"})
    if ir.box is not None:  # boxes are in pixels of the original image: score the map at that size
        row.update(score_box(res.saliency, ir.box, settings.tolerance))
    unc = res.explanation.uncertainty or {}
    if "stability" in unc:
        row["stability"] = float(unc["stability"])
    row["queries"] = int(res.explanation.queries)
    row["seconds"] = float(res.explanation.seconds)
    row["metric_seconds"] = float(scores.get("metric_seconds", 0.0))
    ir.maps[method] = res.saliency
    # the maps compared with the reference in one space: the model's input, or, with a preprocess_fn,
    # the image itself (a white-box map then comes back through the probed geometry, as res.saliency)
    ir.model_maps[method] = res.saliency if in_image else res.explanation.saliency
    res.source, res.stem, res.image_size = ir.path, ir.stem, ir.size   # so res.save() names it as explain does
    ir.results[method] = res
    return row


def _scale_box(path: Path, box, shape: tuple[int, int], size: tuple[int, int]):
    """A box given in the file's pixels, checked against its size and scaled to the working image."""
    if box is None:
        return None
    h, w = size
    if box[2] > w + 1e-6 or box[3] > h + 1e-6:
        raise BlackboxCamError(f"{path.name}: box ({', '.join(f'{v:g}' for v in box)}) lies outside the "
                               f"{w}x{h} image; boxes are in pixels of the original image")
    if tuple(shape) != (h, w):  # a large image is worked on reduced (images.MAX_SIDE)
        sy, sx = shape[0] / h, shape[1] / w
        box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    return box


# -- summary ---------------------------------------------------------------------------------------
def interval(values: Sequence[float], level: float = 0.95,
             bounds: tuple[float, float] = (-math.inf, math.inf)) -> dict[str, float | int | None]:
    """Mean and two-sided Student-t interval of the mean, clipped to the metric's ``bounds``.

    ``lo``/``hi`` are None for fewer than two values (no spread to estimate) and equal the mean
    when all values are equal. With few images the t-interval of a bounded score can leave its
    range (e.g. an AUC above 1); it is clipped to ``bounds`` rather than reported as impossible."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    n = int(v.size)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    mean = float(v.mean())
    if n < 2:
        return {"mean": mean, "lo": None, "hi": None, "n": n}
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "lo": max(bounds[0], mean - half), "hi": min(bounds[1], mean + half), "n": n}


def summarise(result: CompareResult) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """``{method: {metric: {mean, lo, hi, n}}}`` over the images where the method succeeded."""
    out: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for m in result.methods:
        rows = [r for r in result.rows if r["method"] == m]
        out[m] = {k: interval([r[k] for r in rows if r.get(k) is not None], bounds=_bounds(k))
                  for k in result.metric_keys}
    return out


def _bounds(key: str) -> tuple[float, float]:
    if key in METRICS:
        return METRICS[key]["range"]
    if key.startswith("spearman_vs_"):
        return (-1.0, 1.0)
    if key.startswith("iou_vs_"):
        return (0.0, 1.0)
    return (-math.inf, math.inf)
