"""``global``: one method over a dataset, label-wise and overall global maps, and their PEPPR score.

:func:`run_global` is the library behind ``blackbox-cam global``:

1. **maps** -- every input image (:func:`blackbox_cam.jobs.dataset.expand_inputs`) is explained with
   one method, through the map cache under ``OUT/maps/`` (an interrupted or extended run
   recomputes nothing it already has), in-process or on Ray (:mod:`blackbox_cam.jobs.executors`);
2. **aggregation** -- streamed into :class:`blackbox_cam.jobs.global_.maps.Aggregator` (no list of maps):
   per label (ground truth when known, else the prediction) the mean and per-pixel std of the
   normalised maps at the model input size, and the overall map (mean of the label maps);
3. **PEPPR** -- :mod:`blackbox_cam.metrics.peppr` with each label's global map as the ranking,
   with a seeded random ranking, and with each image's own map, so the cost of globalising shows.

Files written under ``OUT`` (see :func:`write_maps`, docs/global.md): ``global_<label>.npy/.png``,
``global_<label>_std.npy/.png``, ``global_overall.npy/.png``, ``global_sheet.png``,
``peppr.json``, ``peppr.png`` and ``global.json`` (settings, labels, images, failures). A bad image
is recorded in ``global.json`` and the others go on.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..dataset import GroundTruth, Item, MapCache, expand_inputs, read_ground_truth, resolve_label
from ...errors import BlackboxCamError
from ...pictures.display import Shows
from ..executors import LocalExecutor, Ready, Work
from .maps import Aggregator
from .units import Failed, ImageSource, MapJob, curves_unit, map_unit
from ...metrics import peppr as pep

TARGETS = ("auto", "truth", "predicted")


@dataclass(repr=False)
class GlobalResult(Shows):
    """What :func:`run_global` produced.

    Shows itself (:class:`~blackbox_cam.pictures.display.Shows`): its picture is the contact
    sheet ``global_sheet.png`` (every label's mean and std map); :meth:`peppr_picture` is
    ``peppr.png``; its text names each label with its image count and PEPPR score.
    """

    out: Path
    aggregator: Aggregator
    names: dict[int, str]                        # label index -> its name (file names use a slug)
    images: list[dict[str, Any]]                 # one record per aggregated image
    failures: list[dict[str, str]]
    peppr: dict[str, Any] | None
    files: dict[str, str]
    settings: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)   # non-image files found in folders
    computed: int = 0                            # maps made in this run (the rest came from the cache)
    reused: int = 0
    curves_computed: int = 0
    curves_reused: int = 0

    @property
    def labels(self) -> list[int]:
        return self.aggregator.labels

    def _open(self, key: str):
        from PIL import Image

        name = self.files.get(key)
        if not name:
            return None
        with Image.open(self.out / name) as im:
            return im.convert("RGB")

    def picture(self):
        """The contact sheet of global maps (``global_sheet.png``)."""
        return self._open("sheet")

    def peppr_picture(self):
        """The PEPPR curves (``peppr.png``), or None when PEPPR was not computed."""
        return self._open("peppr_png")

    def describe(self) -> str:
        labels = (self.peppr or {}).get("labels", {})
        parts = []
        for k in self.labels:
            name = self.names.get(k, str(k))
            score = labels.get(name, {}).get("peppr")
            peppr = f", PEPPR {score:.2f}" if score is not None else ""
            parts.append(f"{name} (n={self.aggregator.count(k)}{peppr})")
        fails = f", {len(self.failures)} failed" if self.failures else ""
        return (f"global {self.settings.get('method', '')}: {len(self.images)} images{fails}; "
                + ", ".join(parts) + f" -> {self.out}")

    def __repr__(self) -> str:
        return f"<GlobalResult {self.describe()}>"


@dataclass
class _Ctx:
    item: Item
    digest: str
    key: str
    truth: int | None
    small: np.ndarray | None = None              # the image at the model input size (mean image)
    label: int | None = None
    cached: bool = False


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def run_global(clf: Any, inputs: Iterable[str | os.PathLike | Item], out_dir: str | os.PathLike, *,
               method: str = "gradcam", budget: int | None = None, seed: int = 0,
               options: dict[str, Any] | None = None, ground_truth: str | os.PathLike | GroundTruth | None = None,
               target: str = "auto", peppr: bool = True, steps: int = pep.DEFAULT_STEPS,
               executor: Any = None, progress: Callable[[Iterable, int, str], Iterable] | None = None,
               say: Callable[[str], None] | None = None) -> GlobalResult:
    """Explain every input with ``method``, aggregate global maps, score them with PEPPR, write files.

    Parameters
    ----------
    clf : a :class:`~blackbox_cam.model.runtime.Classifier`.
    inputs : files, folders, manifest CSVs or :class:`~blackbox_cam.jobs.dataset.Item`.
    out_dir : output folder (the map cache is ``out_dir/maps``).
    method, budget, seed, options : the saliency method and its settings (see ``explain``).
    ground_truth : a CSV ``image,label`` (or a :class:`GroundTruth`); manifest ``label`` columns
        count too.
    target : ``truth`` (explain and group by the known label), ``predicted`` (by the top-1
        prediction) or ``auto`` (truth when labels are known, else predicted).
    peppr : compute PEPPR (``2 x steps`` queries per image and ranking; 3 rankings per image
        plus the overall map).
    steps : fractions of the PEPPR curves (>= 11).
    executor : :class:`~blackbox_cam.jobs.executors.LocalExecutor` (default) or
        :class:`~blackbox_cam.jobs.executors.RayExecutor`.
    progress : ``progress(iterable, total, description) -> iterable`` (e.g. a tqdm bar).
    say : called with one line per notable event (failures).
    """
    from ...io.output import ensure_dir
    from ...methods import get_method
    call = get_method(method).bind(budget, clf.input_size, **(options or {}))  # checked before any query
    if target not in TARGETS:
        raise BlackboxCamError(f"--target {target!r}: choose truth, predicted or auto")
    if steps < pep.MIN_STEPS:
        raise BlackboxCamError(f"--steps {steps}: PEPPR needs at least {pep.MIN_STEPS} fractions")
    inputs = list(inputs)
    items = inputs if inputs and all(isinstance(i, Item) for i in inputs) else expand_inputs(inputs)
    gt = read_ground_truth(ground_truth, clf.labels, clf.num_classes) if isinstance(
        ground_truth, (str, os.PathLike)) else ground_truth
    manifest = {it.name: resolve_label(it.label, clf.labels, clf.num_classes, where=it.origin)
                for it in items if it.label is not None}
    if target == "auto":
        target = "truth" if (gt is not None or manifest) else "predicted"
    if target == "truth" and gt is None and not manifest:
        raise BlackboxCamError("--target truth needs the labels: pass --ground-truth CSV (image,label) or a "
                               "manifest CSV with a label column")
    out = ensure_dir(out_dir)
    cache = MapCache(out, clf)
    executor = executor or LocalExecutor(clf)
    say = say or (lambda _m: None)
    progress = progress or (lambda it, total, desc: it)
    size = tuple(clf.input_size)
    agg = Aggregator(size)
    failures: list[dict[str, str]] = []
    done: list[_Ctx] = []
    result = GlobalResult(out, agg, {}, [], failures, None, {}, {})

    def fail(item: Item, error: str) -> None:
        failures.append({"image": str(item.path), "name": item.name, "error": error})
        say(f"error: {error}")

    def source(item: Item) -> ImageSource:
        if executor.remote:
            return ImageSource(item.name, data=item.path.read_bytes())
        return ImageSource(item.name, path=str(item.path))

    def map_tasks():
        from ...io.images import resize
        for item in items:
            if item.skip:  # a non-image file found in a folder: listed, not a failure
                result.skipped.append({"image": str(item.path), "name": item.name, "reason": item.error or ""})
                say(item.error or f"{item.name}: skipped")
                continue
            try:
                digest = item.digest()
                small = resize(item.load(), size).astype(np.float32)
            except BlackboxCamError as e:
                fail(item, str(e))
                continue
            truth = gt.get(item) if gt is not None else None
            if truth is None:
                truth = manifest.get(item.name)
            if target == "truth" and truth is None:
                fail(item, f"{item.path}: no ground-truth label (add it to the --ground-truth CSV or the manifest)")
                continue
            job = MapJob.of(call, truth if target == "truth" else None, seed)
            ctx = _Ctx(item, digest, job.key(cache, digest), truth, small)
            entry = cache.get(ctx.key)
            ctx.cached = entry is not None
            yield ctx, (Ready(entry) if entry is not None else Work(map_unit, (source(item), job), item.name))

    for ctx, res in progress(executor.imap(map_tasks()), len(items), f"{method} maps"):
        if isinstance(res, Failed):
            fail(ctx.item, res.error)
            continue
        if ctx.cached:
            result.reused += 1
        else:
            cache.put(ctx.key, res)
            result.computed += 1
        if res.saliency.shape != size:
            fail(ctx.item, f"{ctx.item.path}: {method} returned a map of shape {res.saliency.shape}, "
                           f"not the model input size {size}")
            continue
        ctx.label = ctx.truth if target == "truth" else int(res.predicted)
        agg.add(ctx.label, res.saliency, ctx.small)
        ctx.small = None
        done.append(ctx)
        result.images.append({"image": str(ctx.item.path), "name": ctx.item.name, "label": ctx.label,
                              "truth": ctx.truth, "predicted": int(res.predicted),
                              "predicted_score": float(res.predicted_score), "target": int(res.target),
                              "target_score": float(res.score)})
    if not done:
        raise BlackboxCamError(f"no image could be explained ({len(failures)} failed); the first error: "
                               f"{failures[0]['error'] if failures else 'no inputs'}")
    result.names = {k: clf.label(k) for k in agg.labels}
    result.settings = {"model": str(clf.path), "method": method, "budget": call.budget, "seed": seed,
                       "options": dict(call.options), "target": target, "input_size": list(size),
                       "ground_truth": str(gt.source) if gt is not None else None, "peppr_steps": steps,
                       "peppr_baseline": "zeros (model space)", "num_classes": clf.num_classes}
    from .plots import write_maps
    result.files.update(write_maps(agg, result.names, out))
    if peppr:
        result.peppr = _peppr(clf, cache, executor, done, agg, steps, seed, result, source, fail, progress)
        from .plots import write_peppr
        result.files.update(write_peppr(result.peppr, out))
    _write_summary(result)
    return result


def _peppr(clf, cache, executor, done, agg, steps, seed, result, source, fail, progress) -> dict[str, Any]:
    """Second pass: PEPPR curves per image (cached), accumulated per label and overall."""
    size = agg.size
    fr = pep.fractions(steps)
    label_rank = {k: pep.ranking(agg.mean(k), seed).astype(np.int32) for k in agg.labels}
    overall_rank = pep.ranking(agg.overall(), seed).astype(np.int32)
    random_rank = pep.random_ranking(size, seed).astype(np.int32)
    shas = {"overall": _sha(overall_rank), "random": _sha(random_rank)}
    accs = {k: pep.PepprAccumulator(fr) for k in agg.labels}
    overall = pep.PepprAccumulator(fr)

    def tasks():
        for ctx in done:
            entry = cache.get(ctx.key)
            if entry is None:  # removed meanwhile: nothing to rank by
                fail(ctx.item, f"{ctx.item.path}: its cached map disappeared from {cache.dir}; run again")
                continue
            own = pep.ranking(entry.saliency, seed).astype(np.int32)
            ranks = {"global": label_rank[ctx.label], "overall": overall_rank, "random": random_rank, "own": own}
            key = cache.derived_key("peppr", image=ctx.digest, target=ctx.label, steps=steps, seed=seed,
                                    ranks=[_sha(label_rank[ctx.label]), shas["overall"], shas["random"], _sha(own)])
            got = cache.load(key)
            if got is not None and got[0].get("curves") is not None and got[0]["curves"].shape == (4, 2, steps):
                yield (ctx, key, False), Ready(got[0]["curves"])
            else:
                yield (ctx, key, True), Work(curves_unit, (source(ctx.item), int(ctx.label), steps, ranks), ctx.item.name)

    for (ctx, key, fresh), res in progress(executor.imap(tasks()), len(done), "PEPPR"):
        if isinstance(res, Failed):
            fail(ctx.item, res.error)
            continue
        if fresh:
            cache.store(key, {"curves": np.asarray(res, np.float64)}, {"kind": "peppr", "image": ctx.item.name})
            result.curves_computed += 1
        else:
            result.curves_reused += 1
        c = np.asarray(res, np.float64)
        accs[ctx.label].add("global", *c[0])
        accs[ctx.label].add("random", *c[2])
        accs[ctx.label].add("own", *c[3])
        overall.add("global", *c[1])
        overall.add("random", *c[2])
        overall.add("own", *c[3])

    def block(acc: pep.PepprAccumulator) -> dict[str, Any]:
        out = acc.result("global", "random")
        own = acc.result("own", "random")
        out["own_map"] = {"erase": own["erase"], "restore": own["restore"], "peppr": own["peppr"]}
        return out

    labels = {}
    for k in agg.labels:
        if k in accs and accs[k].n:
            labels[result.names[k]] = {"index": int(k), **block(accs[k])}
    return {"labels": labels, "overall": block(overall) if overall.n else None,
            "protocol": {"steps": steps, "fractions": [float(f) for f in fr], "baseline": "zeros (model space)",
                         "random_seed": seed, "score": "[AUC(erase_random) - AUC(erase)] + "
                                                        "[AUC(restore) - AUC(restore_random)]",
                         "see": "docs/global.md"}}


def _write_summary(result: GlobalResult) -> None:
    from ...io.output import write_json
    agg = result.aggregator
    labels = {result.names[k]: {"index": int(k), "n_images": agg.count(k), "empty_maps": agg.empty_maps(k),
                                "peppr": (result.peppr or {}).get("labels", {}).get(result.names[k], {}).get("peppr"),
                                "own_map_peppr": (result.peppr or {}).get("labels", {}).get(result.names[k], {})
                                .get("own_map", {}).get("peppr")}
              for k in agg.labels}
    overall = (result.peppr or {}).get("overall") or {}
    summary = {"settings": result.settings, "n_images": len(result.images), "n_failed": len(result.failures),
               "labels": labels, "overall": {"peppr": overall.get("peppr"),
                                             "own_map_peppr": (overall.get("own_map") or {}).get("peppr")},
               "files": result.files, "images": result.images, "failures": result.failures,
               "skipped": result.skipped}
    write_json(result.out / "global.json", summary)
    result.files["summary"] = "global.json"


__all__ = ["GlobalResult", "TARGETS", "run_global"]
