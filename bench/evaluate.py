"""Faithfulness and localisation of saliency methods on the issue-7 evaluation sets, with intervals.

Not a test. For one split (``--split tune`` to tune, ``report`` to report) of one or both sets of
``bench/evalset.py`` (``composites``: 50 ImageNet objects pasted at known boxes, bundled
EfficientNet-Lite0; ``planted``: 100 planted-evidence images, models/planted/planted.onnx), every
method (DE-CAM, RISE, occlusion at each budget; Grad-CAM once; OpenVINO XAI's AISE and RISE with
``--ov-python``) explains the case's target, and each map is scored per image:

* deletion and insertion AUC, RISE protocol (:mod:`blackbox_cam.metrics`: ``step = W`` pixels,
  one image row's worth, 225 points at 224 x 224). ``--auc-step K`` changes K x W pixels per
  step (K times fewer metric queries; e.g. ``--auc-step 4``: 57 points at 224, 17 at 64, for
  quick tuning runs; only K = 1 is the protocol, report with it);
* pointing game (map maximum inside the truth box, ``--tolerance`` pixels, default 0) and energy in
  the box (Score-CAM's energy-based pointing game), both at the model input resolution (both sets
  are stored at it, so the boxes are exact there);
* queries, seconds (the method's wall time, metrics excluded) and queries per second.

Output in ``--out`` (default bench/results/), named ``eval-<split>`` unless ``--name``:
``.json`` (every row, rewritten after each one, so a stopped run keeps what it did; rerunning
skips the rows already done with the same settings), ``.md`` (means with 95 % Student-t
intervals, and the PAIRED per-image difference of every DE-CAM variant minus RISE, occlusion,
Grad-CAM and OpenVINO XAI at the same budget, with its 95 % interval and a verdict), ``.png``
(each metric vs. budget, interval bars) and ``-seconds.png`` (each metric vs. mean seconds per
image, the per-second comparison). Maps go to an npz cache (``bench/results/cache/``, git-ignored)
keyed by set, case, method, budget, seed, options and a hash of the method's source files, so
rescoring (another ``--auc-step`` or tolerance) or adding methods does not recompute them.

DE-CAM options for tuning: ``--decam-options '{"grid": 6}'`` (passed to the method), and
``--variants FILE.json`` = ``{"name": {options}, ...}``: each variant runs as method
``decam:name`` instead of plain ``decam`` (``--decam-options`` applies underneath each; put
``"default": {}`` in the file to keep the current defaults in the comparison), so several option
sets are compared on the same cases and seeds in one run. Unknown option names are refused here
(the method's signature or registry declaration); values are validated by the method itself.

Seeds: ``--seed S --name eval-report-seedS`` runs one more seed into its own file; ``--merge
eval-report,eval-report-seed1,... --name eval-report-seeds`` writes the per-image means over
those runs (the rows all of them have) with the same tables, so the paired differences are not
driven by one seed's luck on one image.

Quick check (2 images, budget 100)::

    PYTHONPATH=. python bench/evaluate.py --split tune --set both --limit 2 --budgets 100 \
        --auc-step 896 --name smoke

Full tune run at one budget, OpenVINO XAI included::

    PYTHONPATH=. python bench/evaluate.py --split tune --set both --budgets 2000 \
        --ov-python /work/ovenv/bin/python
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import evalset  # noqa: E402
import ov_xai  # noqa: E402

RESULTS = ROOT / "bench" / "results"
OURS = ("decam", "rise", "occlusion", "gradcam")
BASELINES = ("rise", "occlusion", "gradcam", "ov-aise", "ov-rise")
KEYS = ("deletion_auc", "insertion_auc", "pointing_game", "energy_in_box")
COST = ("queries", "seconds", "queries_per_s")


# -- what to run ------------------------------------------------------------------------------
def method_of(label: str) -> str:
    """Registry name of a method label (``decam:fine`` -> ``decam``)."""
    return label.split(":", 1)[0]


def source_files(method: str) -> list[Path]:
    """The files a method's maps depend on: the module that defines its hook, every module of
    this package that module takes names from (e.g. DE-CAM's ``_evidence``), and the shared
    perturbation and mask code. (Before 2026-12-01 this hashed ``methods/base.py``, where the
    registry wraps every hook, so an edit of ``decam.py`` did not invalidate the cache.)"""
    if method.startswith("ov-"):
        return [HERE / "ov_xai.py"]
    import inspect
    from blackbox_cam.methods import METHODS
    mod = sys.modules[METHODS[method].hook.__module__]
    names = {mod.__name__}
    for value in vars(mod).values():
        owner = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
        if isinstance(owner, str) and owner.startswith("blackbox_cam.") and owner in sys.modules:
            names.add(owner)
    files = {Path(sys.modules[n].__file__) for n in names}
    files |= {ROOT / "blackbox_cam" / "methods" / "perturb.py", ROOT / "blackbox_cam" / "methods" / "masks.py"}
    return sorted(files)


def source_hash(method: str) -> str:
    """Hash of the source files a method's maps depend on (a code change invalidates the cache)."""
    h = hashlib.sha1()
    for f in source_files(method):
        if f.exists():
            h.update(f.read_bytes())
    return h.hexdigest()[:10]


def plan(methods: list[str], budgets: list[int], ov_budgets: list[int], decam_options: dict,
         variants: dict[str, dict], auto: float | None = None, auto_only: bool = False) -> dict[str, dict]:
    """``{label: {"method", "options", "budgets"}}`` for every method label to run; with ``auto``
    (a stability threshold) also ``decam:auto`` / ``rise:auto``: ``--budget auto`` with each budget
    as the maximum (issue 21); ``auto_only``: only those (the fixed-budget rows come from another run,
    e.g. copied in with ``--rows-from``)."""
    out: dict[str, dict] = {}
    for m in methods:
        if auto is not None and m in ("decam", "rise"):
            opts = dict(decam_options) if m == "decam" else {}
            out[f"{m}:auto"] = {"method": m, "options": opts, "budgets": budgets, "auto": auto}
            if auto_only:
                continue
        if m == "decam" and variants:
            for name, opts in variants.items():
                out[f"decam:{name}"] = {"method": "decam", "options": {**decam_options, **opts}, "budgets": budgets}
        elif m == "decam":
            out["decam"] = {"method": "decam", "options": dict(decam_options), "budgets": budgets}
        elif m == "gradcam":
            out["gradcam"] = {"method": "gradcam", "options": {}, "budgets": [None]}
        elif m in ov_xai.METHODS:
            out[m] = {"method": m, "options": {}, "budgets": ov_budgets}
        elif m in OURS:
            out[m] = {"method": m, "options": {}, "budgets": budgets}
        else:
            raise SystemExit(f"error: unknown method {m!r}; choose from {', '.join(OURS + ov_xai.METHODS)}")
    return out


def check_options(method: str, options: dict, where: str) -> None:
    """Refuse option names the method does not take (DE-CAM swallows unknown keywords silently)."""
    import inspect

    from blackbox_cam.methods import METHODS
    spec = METHODS[method]
    declared = getattr(spec, "options", None)
    names = {getattr(o, "name", o) for o in declared} if declared else {
        n for n, p in inspect.signature(spec.fn).parameters.items()
        if p.kind is not inspect.Parameter.VAR_KEYWORD} - {"clf", "x", "target", "budget", "seed"}
    unknown = sorted(set(options) - names)
    if unknown:
        raise SystemExit(f"error: {where}: {method} has no option(s) {', '.join(unknown)}; it takes "
                         f"{', '.join(sorted(names))}")


def config_id(label: str, spec: dict, seed: int) -> str:
    blob = json.dumps({"method": spec["method"], "options": spec["options"], "seed": seed,
                       "source": source_hash(spec["method"]), **({"auto": spec["auto"]} if "auto" in spec else {})},
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def row_key(set_name: str, index: int, label: str, budget, cfg: str, step, tol: float) -> str:
    return f"{set_name}|{index}|{label}|{budget}|{cfg}|step={step}|tol={tol:g}"


# -- cache ------------------------------------------------------------------------------------
def cache_path(cache: Path, set_name: str, index: int, label: str, budget, cfg: str) -> Path:
    safe = label.replace(":", "_")
    return cache / set_name / f"{index:03d}" / f"{safe}@{budget or 'na'}-{cfg}.npz"


def cache_load(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        with np.load(path) as d:
            out = {"saliency": d["saliency"].astype(np.float32), "queries": int(d["queries"]),
                   "seconds": float(d["seconds"])}
            if "se" in d.files:
                out["se"] = d["se"].astype(np.float32)
            if "uncertainty" in d.files:
                out["uncertainty"] = json.loads(str(d["uncertainty"]))
            return out
    except Exception:  # a half-written or foreign file: recompute
        return None


def cache_save(path: Path, saliency: np.ndarray, queries: int, seconds: float, meta: dict,
               se: np.ndarray | None = None, uncertainty: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    more = {} if se is None else {"se": se.astype(np.float32)}
    if uncertainty is not None:
        more["uncertainty"] = json.dumps(uncertainty)
    np.savez_compressed(tmp, saliency=saliency.astype(np.float32), queries=queries, seconds=seconds,
                        meta=json.dumps(meta), **more)
    os.replace(tmp, path)


# -- scoring ----------------------------------------------------------------------------------
def score(clf, x: np.ndarray, sal: np.ndarray, target: int, box, step: int | None, tolerance: float) -> dict:
    """The per-image metrics of one model-resolution map (blackbox_cam.metrics)."""
    from blackbox_cam import metrics
    return {"deletion_auc": metrics.deletion(clf.probabilities, x, sal, target, step=step).auc,
            "insertion_auc": metrics.insertion(clf.probabilities, x, sal, target, step=step).auc,
            "pointing_game": float(metrics.pointing_game(sal, box, tolerance=tolerance)),
            "energy_in_box": metrics.energy_in_region(sal, box)}


def make_row(set_name, d, i, label, spec, budget, key, res, scores) -> dict:
    row = {"key": key, "set": set_name, "index": int(d["index"][i]), "image": str(d["names"][i]),
           "object": str(d["objects"][i]), "target": int(d["targets"][i]), "label": label,
           "method": spec["method"], "options": spec["options"], "budget": budget,
           "queries": int(res["queries"]), "seconds": float(res["seconds"]),
           "queries_per_s": (float(res["queries"] / res["seconds"])
                             if res["seconds"] > 0 and budget is not None else None)}
    row.update(scores)
    unc = res.get("uncertainty") or {}
    for k in ("stability", "significant_top20"):
        if k in unc:
            row[k] = unc[k]
    return row


# -- running ----------------------------------------------------------------------------------
class Store:
    """The rows of one output name, rewritten atomically (json + md + plots) as rows arrive."""

    def __init__(self, out: Path, name: str, meta: dict, keep):
        self.out, self.name, self.meta = out, name, meta
        self.rows: list[dict] = []
        path = out / f"{name}.json"
        if path.exists():
            self.rows = [r for r in json.loads(path.read_text()).get("rows", []) if keep(r)]
        self.done = {r["key"] for r in self.rows}

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.done.add(row["key"])
        self.write(plots=False)

    def write(self, plots: bool = True) -> None:
        write_outputs(self.rows, self.meta, self.out, self.name, plots=plots)


def run_set(set_name, d, tasks, args, store: Store, cache: Path | None) -> None:
    from blackbox_cam import Classifier
    from blackbox_cam.explainer.pipeline import explain_image

    clf = Classifier(d["model"], device="cpu", batch_size=args.batch_size)
    xs = [clf.prepare(im.astype(np.float32)) for im in d["images"]]
    for i in range(len(d["targets"])):
        if xs[i].shape[1:] != d["images"][i].shape[:2]:
            raise SystemExit(f"error: {set_name} case {i}: image {d['images'][i].shape[:2]} is not the model's "
                             f"input size {xs[i].shape[1:]}; the boxes would need rescaling")
    step = None if args.auc_step in (None, 1) else int(args.auc_step) * xs[0].shape[2]
    ov_todo: dict[int, list[int]] = {}
    for label, spec in tasks.items():
        cfg = config_id(label, spec, args.seed)
        for budget in spec["budgets"]:
            for i in range(len(d["targets"])):
                key = row_key(set_name, int(d["index"][i]), label, budget, cfg, args.auc_step, args.tolerance)
                if key in store.done:
                    continue
                cp = cache_path(cache, set_name, int(d["index"][i]), label, budget, cfg) if cache else None
                res = cache_load(cp) if cp else None
                if res is None and spec["method"] in ov_xai.METHODS:
                    ov_todo.setdefault(budget, []).append(i)
                    continue
                if res is None:
                    res = explain_case(clf, d, i, spec, budget, args.seed, label, cp)
                t0 = time.perf_counter()
                sc = score(clf, xs[i], res["saliency"], int(d["targets"][i]), tuple(d["boxes"][i]), step,
                           args.tolerance)
                row = make_row(set_name, d, i, label, spec, budget, key, res, sc)
                row["metric_seconds"] = time.perf_counter() - t0
                store.add(row)
                print(f"{set_name} {row['image']} {label}@{budget}: del {sc['deletion_auc']:.3f} ins "
                      f"{sc['insertion_auc']:.3f} pg {sc['pointing_game']:.0f} eib {sc['energy_in_box']:.2f} "
                      f"({row['queries']} q, {row['seconds']:.1f} s; metrics {row['metric_seconds']:.1f} s)",
                      flush=True)
    if ov_todo:
        run_openvino(set_name, d, clf, xs, tasks, ov_todo, args, store, cache)


def explain_case(clf, d, i, spec, budget, seed, label, cp) -> dict:
    """One map (with its standard error and stability) for case ``i``, saved to the cache at ``cp``."""
    from blackbox_cam.explainer.pipeline import explain_image
    from blackbox_cam.methods.uncertainty import AutoBudget

    b = AutoBudget(spec["auto"], budget) if "auto" in spec else budget
    image = d["images"][i].astype(np.float32)
    r = explain_image(clf, image, spec["method"], target=int(d["targets"][i]), budget=b, seed=seed, **spec["options"])
    ex = r.explanation
    res = {"saliency": ex.saliency, "queries": int(ex.queries), "seconds": float(ex.seconds), "se": ex.se,
           "uncertainty": ex.uncertainty}
    if cp:
        cache_save(cp, res["saliency"], res["queries"], res["seconds"],
                   {"label": label, "options": spec["options"], "budget": budget, "seed": seed}, ex.se, ex.uncertainty)
    return res


def coverage(set_name, d, tasks, args, cache: Path | None) -> list[dict]:
    """Issue 21: do the standard errors cover an independent run? Per case, method and budget,
    the map of ``--seed`` (a) and of each seed in ``--coverage`` (b): the share of pixels with
    ``|b - a| <= 2 se_a`` (the literal check; 84 % when both maps have error ``se``, since the
    difference of two runs has twice the variance of one) and with ``|b - a| <= 2 sqrt(se_a^2 +
    se_b^2)`` (the test of the difference itself: ~95 % when the standard errors are right)."""
    from blackbox_cam import Classifier

    clf = Classifier(d["model"], device="cpu", batch_size=args.batch_size)
    rows = []
    for label, spec in tasks.items():
        if spec["method"] not in ("decam", "rise", "occlusion") or "auto" in spec:
            continue
        for budget in spec["budgets"]:
            for i in range(len(d["targets"])):
                maps = {}
                for seed in [args.seed] + _ints(args.coverage):
                    cfg = config_id(label, spec, seed)
                    cp = cache_path(cache, set_name, int(d["index"][i]), label, budget, cfg) if cache else None
                    res = cache_load(cp) if cp else None
                    if res is None or "se" not in res:
                        res = explain_case(clf, d, i, spec, budget, seed, label, cp)
                    maps[seed] = res
                a = maps[args.seed]
                for seed, b in maps.items():
                    if seed == args.seed:
                        continue
                    diff = np.abs(b["saliency"] - a["saliency"])
                    both = 2 * np.sqrt(a["se"] ** 2 + b["se"] ** 2)
                    top = a["saliency"] >= np.quantile(a["saliency"], 0.8)  # where the map says something
                    row = {"set": set_name, "index": int(d["index"][i]), "label": label, "budget": budget,
                           "seeds": [args.seed, seed],
                           "within_2se": float((diff <= 2 * a["se"]).mean()),
                           "within_2se_diff": float((diff <= both).mean()),
                           "within_2se_diff_top20": float((diff[top] <= both[top]).mean()),
                           "mean_se": float(a["se"].mean()), "rms_diff": float(np.sqrt((diff ** 2).mean())),
                           "stability": (a.get("uncertainty") or {}).get("stability")}
                    rows.append(row)
                    print(f"coverage {set_name} {row['index']} {label}@{budget} seeds {row['seeds']}: "
                          f"{row['within_2se']:.3f} / {row['within_2se_diff']:.3f} (mean se {row['mean_se']:.4f}, "
                          f"rms diff {row['rms_diff']:.4f})", flush=True)
    return rows


def coverage_markdown(rows: list[dict], meta: dict) -> str:
    from blackbox_cam.jobs.compare.job import interval
    L = [f"# Coverage of the standard-error maps: split `{meta['split']}` ({meta['when']})", "",
         meta["note"], "",
         "Per image: share of pixels where another seed's map lies within 2 standard errors of this "
         "seed's map (`|b - a| <= 2 se_a`; 84 % expected if the standard errors are right, since the "
         "difference of two runs has twice one run's variance) and where the difference lies within "
         "2 of its own standard errors (`|b - a| <= 2 sqrt(se_a^2 + se_b^2)`; ~95 % expected), also "
         "restricted to the top-20 % of map a (where a map says something: a flat background that "
         "both runs put at 0 is covered trivially). Means over images with 95 % t-intervals.", "",
         "| set | method | budget | images | within 2 se_a | within 2 se of the difference | same, in the top-20 % "
         "region of map a | mean se | rms difference |",
         "|---|---|---:|---:|---|---|---|---:|---:|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["label"], r["budget"]), []).append(r)
    for (s, lb, b), rs in sorted(groups.items()):
        iv = {k: interval([r[k] for r in rs], bounds=(0.0, 1.0))
              for k in ("within_2se", "within_2se_diff", "within_2se_diff_top20")}
        L.append(f"| {s} | {lb} | {b} | {len(rs)} | {_fmt(iv['within_2se'])} | {_fmt(iv['within_2se_diff'])} | "
                 f"{_fmt(iv['within_2se_diff_top20'])} | "
                 f"{np.mean([r['mean_se'] for r in rs]):.4f} | {np.mean([r['rms_diff'] for r in rs]):.4f} |")
    return "\n".join(L) + "\n"


def run_openvino(set_name, d, clf, xs, tasks, todo: dict[int, list[int]], args, store, cache) -> None:
    """One OpenVINO XAI worker per budget (both methods), so a stop loses at most one budget."""
    from blackbox_cam.io.images import resize_map
    from blackbox_cam.methods.base import normalise

    if not args.ov_python:
        print("OpenVINO XAI skipped: no --ov-python", file=sys.stderr)
        return
    labels = [lb for lb in tasks if lb in ov_xai.METHODS]
    for budget, idx in sorted(todo.items()):
        idx = sorted(set(idx))
        methods = [lb for lb in labels if budget in tasks[lb]["budgets"]]
        try:
            out = ov_xai.explain(args.ov_python, d["model"], np.stack([xs[i] for i in idx]),
                                 [int(d["targets"][i]) for i in idx], [budget], softmax=not clf.outputs_probabilities,
                                 methods=methods)
        except RuntimeError as e:
            print(e, file=sys.stderr)
            continue
        for label in methods:
            spec = tasks[label]
            cfg = config_id(label, spec, args.seed)
            r = out[(label, budget)]
            for j, i in enumerate(idx):
                key = row_key(set_name, int(d["index"][i]), label, budget, cfg, args.auc_step, args.tolerance)
                if key in store.done:
                    continue
                sal = normalise(resize_map(np.asarray(r["maps"][j], np.float32), xs[i].shape[1:]))
                res = {"saliency": sal, "queries": int(r["queries"][j]), "seconds": float(r["seconds"][j])}
                if cache:
                    cache_save(cache_path(cache, set_name, int(d["index"][i]), label, budget, cfg), sal,
                               res["queries"], res["seconds"], {"label": label, "budget": budget})
                step = None if args.auc_step in (None, 1) else int(args.auc_step) * xs[i].shape[2]
                sc = score(clf, xs[i], sal, int(d["targets"][i]), tuple(d["boxes"][i]), step, args.tolerance)
                row = make_row(set_name, d, i, label, spec, budget, key, res, sc)
                store.add(row)
                print(f"{set_name} {row['image']} {label}@{budget}: del {sc['deletion_auc']:.3f} ins "
                      f"{sc['insertion_auc']:.3f} pg {sc['pointing_game']:.0f} ({row['queries']} q, "
                      f"{row['seconds']:.1f} s)", flush=True)


# -- summary ----------------------------------------------------------------------------------
def _bounds(key: str) -> tuple[float, float]:
    from blackbox_cam.jobs.compare.job import METRICS
    return METRICS[key]["range"] if key in METRICS else (-math.inf, math.inf)


def aggregate(rows: list[dict]) -> list[dict]:
    """Per (set, label, budget): mean and 95 % t-interval of every metric and cost."""
    from blackbox_cam.jobs.compare.job import interval
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["label"], r["budget"]), []).append(r)
    out = []
    for (s, lb, b), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        a = {"set": s, "label": lb, "budget": b, "n": len(rs)}
        for k in KEYS + COST:
            a[k] = interval([r[k] for r in rs if r.get(k) is not None], bounds=_bounds(k))
        out.append(a)
    return out


def paired(rows: list[dict]) -> list[dict]:
    """Per set and budget: every DE-CAM label minus every baseline, paired by image (95 % t)."""
    from blackbox_cam.jobs.compare.job import interval
    from blackbox_cam.jobs.compare.job import METRICS
    by = {(r["set"], r["label"], r["budget"], r["index"]): r for r in rows}
    have: dict[tuple, set] = {}
    for (s, lb, b, i) in by:
        have.setdefault((s, lb, b), set()).add(i)
    sets = sorted({r["set"] for r in rows})
    out = []
    for s in sets:
        decams = sorted({r["label"] for r in rows if r["set"] == s and r["method"] == "decam"})
        budgets = sorted({r["budget"] for r in rows if r["set"] == s and r["method"] == "decam"})
        for b in budgets:
            for dl in decams:
                for base in BASELINES:
                    bb = None if base == "gradcam" else b
                    idx = sorted(have.get((s, dl, b), set()) & have.get((s, base, bb), set()))
                    if not idx:
                        continue
                    item = {"set": s, "budget": b, "decam": dl, "baseline": base, "n": len(idx)}
                    for k in KEYS:
                        diff = [by[(s, dl, b, i)][k] - by[(s, base, bb, i)][k] for i in idx]
                        lo, hi = _bounds(k)
                        iv = interval(diff, bounds=(lo - hi, hi - lo))
                        higher = METRICS[k]["higher"]
                        if iv["lo"] is None:
                            verdict = "n<2"
                        elif (iv["lo"] > 0) == higher and (iv["lo"] > 0 or iv["hi"] < 0):
                            verdict = "better"
                        elif iv["lo"] > 0 or iv["hi"] < 0:
                            verdict = "worse"
                        else:
                            verdict = "n.s."
                        item[k] = {**iv, "verdict": verdict}
                    out.append(item)
    return out


def paired_auto(rows: list[dict]) -> list[dict]:
    """Issue 21: every ``M:auto`` label minus ``M`` at the same (maximum) budget, paired by image:
    the faithfulness it costs (intervals that include 0: none measurable) and the queries saved."""
    from blackbox_cam.jobs.compare.job import interval
    by = {(r["set"], r["label"], r["budget"], r["index"]): r for r in rows}
    out = []
    for (s, lb, b) in sorted({(r["set"], r["label"], r["budget"]) for r in rows if r["label"].endswith(":auto")}):
        fixed = lb[:-len(":auto")]
        idx = sorted(i for (s2, l2, b2, i) in by if (s2, l2, b2) == (s, lb, b) and (s, fixed, b, i) in by)
        if not idx:
            continue
        item = {"set": s, "budget": b, "auto": lb, "fixed": fixed, "n": len(idx),
                "queries_auto": float(np.mean([by[(s, lb, b, i)]["queries"] for i in idx])),
                "queries_fixed": float(np.mean([by[(s, fixed, b, i)]["queries"] for i in idx]))}
        for k in KEYS:
            lo, hi = _bounds(k)
            item[k] = interval([by[(s, lb, b, i)][k] - by[(s, fixed, b, i)][k] for i in idx], bounds=(lo - hi, hi - lo))
        out.append(item)
    return out


def _fmt(iv: dict, d: int = 3) -> str:
    if iv is None or iv.get("mean") is None:
        return ""
    if iv["lo"] is None:
        return f"{iv['mean']:.{d}f}"
    return f"{iv['mean']:.{d}f} [{iv['lo']:.{d}f}, {iv['hi']:.{d}f}]"


def markdown(agg: list[dict], pairs: list[dict], meta: dict, rows: list[dict] | None = None) -> str:
    cases: dict[str, int] = {}
    for a in agg:
        cases[a["set"]] = max(cases.get(a["set"], 0), a["n"])
    L = [f"# DE-CAM evaluation: split `{meta['split']}` ({meta['when']})", "",
         "Cases: " + ", ".join(f"{s} {n}" for s, n in cases.items()) + ". " + meta["note"], "",
         "## Means over images, 95 % Student-t intervals", "",
         "| set | method | budget | n | deletion AUC (lower better) | insertion AUC | pointing game | "
         "energy in box | queries | seconds | queries/s |",
         "|---|---|---:|---:|---|---|---|---|---:|---:|---:|"]
    for a in agg:
        L.append(f"| {a['set']} | {a['label']} | {a['budget'] or '-'} | {a['n']} | {_fmt(a['deletion_auc'])} | "
                 f"{_fmt(a['insertion_auc'])} | {_fmt(a['pointing_game'], 2)} | {_fmt(a['energy_in_box'])} | "
                 f"{_fmt({'mean': a['queries']['mean'], 'lo': None}, 0)} | "
                 f"{_fmt({'mean': a['seconds']['mean'], 'lo': None}, 2)} | "
                 f"{_fmt({'mean': a['queries_per_s']['mean'], 'lo': None}, 0)} |")
    L += ["", "## Paired per-image difference DE-CAM minus baseline (same images, same budget; Grad-CAM "
          "has no budget), mean [95 % t-interval]; verdict: interval excludes 0 on DE-CAM's good side "
          "(`better`), on the bad side (`worse`), else `n.s.`", "",
          "| set | budget | DE-CAM | minus | n | deletion AUC | insertion AUC | pointing game | energy in box |",
          "|---|---:|---|---|---:|---|---|---|---|"]
    for p in pairs:
        cells = [f"{_fmt(p[k])} {p[k]['verdict']}" for k in KEYS]
        L.append(f"| {p['set']} | {p['budget']} | {p['decam']} | {p['baseline']} | {p['n']} | " + " | ".join(cells) + " |")
    autos = paired_auto(rows or [])
    if autos:
        L += ["", "## `--budget auto` minus the fixed budget (same method, same images; the budget column is "
              "auto's maximum), paired per image, mean [95 % t-interval] (issue 21)", "",
              "| set | max budget | method | n | queries auto / fixed | deletion AUC | insertion AUC | pointing game | "
              "energy in box |", "|---|---:|---|---:|---|---|---|---|---|"]
        for p in autos:
            L.append(f"| {p['set']} | {p['budget']} | {p['auto']} | {p['n']} | {p['queries_auto']:.0f} / "
                     f"{p['queries_fixed']:.0f} ({p['queries_auto'] / p['queries_fixed']:.2f}) | "
                     + " | ".join(_fmt(p[k]) for k in KEYS) + " |")
    return "\n".join(L) + "\n"


def plot(agg: list[dict], path: Path, x: str = "budget") -> None:
    """Every metric against budget (or mean seconds), one row per set, 95 % interval bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sets = sorted({a["set"] for a in agg})
    labels = sorted({a["label"] for a in agg})
    fixed = {"decam": "tab:red", "rise": "tab:blue", "occlusion": "tab:green", "gradcam": "black",
             "ov-aise": "tab:orange", "ov-rise": "tab:purple"}
    spare = iter(["tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray", "gold", "navy", "lime"] * 4)
    colour = {lb: fixed.get(lb) or next(spare) for lb in labels}
    dodge = {lb: math.exp(0.035 * (j - (len(labels) - 1) / 2)) for j, lb in enumerate(labels)}
    fig, axes = plt.subplots(len(sets), len(KEYS), figsize=(4.2 * len(KEYS), 3.4 * len(sets)), squeeze=False)
    for r, s in enumerate(sets):
        for c, k in enumerate(KEYS):
            ax = axes[r][c]
            for lb in labels:
                pts = [a for a in agg if a["set"] == s and a["label"] == lb and a[k]["mean"] is not None]
                if not pts:
                    continue
                ys = np.array([p[k]["mean"] for p in pts])
                lo = np.array([p[k]["lo"] if p[k]["lo"] is not None else p[k]["mean"] for p in pts])
                hi = np.array([p[k]["hi"] if p[k]["hi"] is not None else p[k]["mean"] for p in pts])
                if x == "budget" and pts[0]["budget"] is None:        # Grad-CAM: no budget, a band
                    ax.axhline(ys[0], color=colour[lb], ls="--", lw=1.2, label=lb)
                    ax.axhspan(lo[0], hi[0], color=colour[lb], alpha=0.12)
                    continue
                xs = np.array([(p["budget"] * dodge[lb] if x == "budget" else p["seconds"]["mean"]) for p in pts],
                              float)
                o = np.argsort(xs)
                ax.errorbar(xs[o], ys[o], yerr=[ys[o] - lo[o], hi[o] - ys[o]], color=colour[lb], marker="o",
                            ms=4, capsize=3, lw=1.4, label=lb)
            ax.set_xscale("log")
            if x == "budget":
                bud = sorted({a["budget"] for a in agg if a["budget"] is not None})
                if bud:
                    ax.set_xlim(bud[0] / 1.4, bud[-1] * 1.4)
                    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(bud))
                    ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([str(b) for b in bud]))
                    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            else:  # seconds: within a decade the log axis labels every minor tick on top of each other
                lo_x, hi_x = ax.get_xlim()
                if hi_x / max(lo_x, 1e-12) < 10:
                    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
                    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
                ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.4g"))
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            from blackbox_cam.jobs.compare.job import METRICS
            ax.set_title(f"{s}: {METRICS[k]['label']} ({'higher' if METRICS[k]['higher'] else 'lower'} better)",
                         fontsize=9)
            ax.set_xlabel("budget (queries)" if x == "budget" else "seconds per image (mean)", fontsize=8)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
    h, lb = axes[0][0].get_legend_handles_labels()
    for row in axes:
        for ax in row:
            for hh, ll in zip(*ax.get_legend_handles_labels()):
                if ll not in lb:
                    h.append(hh)
                    lb.append(ll)
    fig.legend(h, lb, loc="lower center", ncol=min(8, len(lb)), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def write_outputs(rows: list[dict], meta: dict, out: Path, name: str, plots: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    agg, pairs = aggregate(rows), paired(rows)
    doc = {"meta": meta, "rows": rows, "summary": agg, "paired": pairs, "paired_auto": paired_auto(rows)}
    for fname, text in ((f"{name}.json", json.dumps(doc, indent=1, allow_nan=False)),
                        (f"{name}.md", markdown(agg, pairs, meta, rows))):
        tmp = out / f"{fname}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / fname)
    if plots and agg:
        plot(agg, out / f"{name}.png", "budget")
        plot(agg, out / f"{name}-seconds.png", "seconds")


def merge_seeds(docs: list[dict]) -> tuple[list[dict], dict]:
    """Rows of runs that differ only in ``--seed``, averaged per (set, method label, budget, image).

    Only the (set, label, budget, image) rows present in every run are kept, so each mean is over
    the same seeds. The per-image mean over seeds then enters the intervals and the paired
    differences as one observation: the method's seed-to-seed noise is averaged out per image
    instead of counted as if it were a difference between images.
    """
    keyed = [{(r["set"], r["label"], r["budget"], r["index"]): r for r in d["rows"]} for d in docs]
    common = set(keyed[0]).intersection(*keyed[1:])
    rows = []
    for k in sorted(common, key=lambda t: (t[0], t[1], t[2] or 0, t[3])):
        group = [kd[k] for kd in keyed]
        row = {**group[0], "key": "|".join(map(str, k)) + "|merged", "seeds": [d["meta"]["seed"] for d in docs]}
        for m in KEYS + COST:
            vals = [g[m] for g in group if g.get(m) is not None]
            row[m] = float(np.mean(vals)) if vals else None
        rows.append(row)
    meta = {**docs[0]["meta"], "seed": [d["meta"]["seed"] for d in docs], "merged": [d["meta"]["when"] for d in docs],
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    meta["cases"] = {s: len({k[3] for k in common if k[0] == s}) for s in sorted({k[0] for k in common})}
    meta["note"] = (meta["note"].replace(f" seed {docs[0]['meta']['seed']}.", "")
                    + f" Each row is the mean over seeds {meta['seed']} of one image (runs merged with --merge).")
    return rows, meta


# -- CLI --------------------------------------------------------------------------------------
def estimate(data: dict, tasks: dict, args, store: Store, cache: Path | None) -> None:
    """Print the queries this run still has to make and the time they take at a measured rate.

    The rate is probed here (3 s of batches of 16 on a random input). OpenVINO XAI is assumed at a
    share of it measured on the loaded 2-core machine: 0.75 for EfficientNet-Lite0 (~12 vs ~16
    queries/s) and 0.2 for the tiny planted model, where its per-call overhead dominates (~130 vs
    ~620 queries/s)."""
    from blackbox_cam import Classifier
    total = 0.0
    for s, d in data.items():
        clf = Classifier(d["model"], device="cpu", batch_size=args.batch_size)
        h, w = d["images"].shape[1:3]
        probe = np.random.default_rng(0).standard_normal((16, 3, h, w)).astype(np.float32)
        clf.probabilities(probe[:2])
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < 3.0:
            clf.probabilities(probe)
            n += len(probe)
        rate = n / (time.perf_counter() - t0)
        metric_q = 2 * (-(-h // args.auc_step) + 1)
        print(f"{s}: {len(d['targets'])} cases, {rate:.0f} queries/s measured now "
              f"(load average {os.getloadavg()[0]:.1f}); {metric_q} metric queries per map")
        for label, spec in tasks.items():
            cfg = config_id(label, spec, args.seed)
            for b in spec["budgets"]:
                todo = [i for i in range(len(d["targets"])) if row_key(
                    s, int(d["index"][i]), label, b, cfg, args.auc_step, args.tolerance) not in store.done]
                cached = sum(1 for i in todo if cache and cache_path(cache, s, int(d["index"][i]), label, b,
                                                                     cfg).exists())
                q = (len(todo) - cached) * (b or 1) + len(todo) * metric_q
                share = (0.2 if h * w <= 64 * 64 else 0.75) if label in ov_xai.METHODS else 1.0
                sec = q / (rate * share)
                total += sec
                print(f"  {label}@{b}: {len(todo)} to do ({cached} maps cached), {q} queries, ~{sec / 60:.1f} min")
    print(f"total ~{total / 3600:.2f} h at these rates")


def balanced_order(objects: np.ndarray) -> np.ndarray:
    """Case positions ordered round-robin over objects (first of each object, then second, ...),
    so that ``--limit N`` keeps the classes balanced."""
    rank = np.zeros(len(objects), int)
    for o in np.unique(objects):
        idx = np.flatnonzero(objects == o)
        rank[idx] = np.arange(len(idx))
    return np.lexsort((np.arange(len(objects)), rank))


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--split", choices=("tune", "report", "all"), default="tune")
    ap.add_argument("--set", choices=("composites", "planted", "both"), default="both")
    ap.add_argument("--methods", default="decam,rise,occlusion,gradcam,ov-aise,ov-rise",
                    help="comma-separated; ov-* need --ov-python")
    ap.add_argument("--budgets", default="500,1000,2000,4000", help="budgets of decam, rise, occlusion")
    ap.add_argument("--ov-budgets", default=None, help="budgets of OpenVINO XAI (default: --budgets)")
    ap.add_argument("--ov-python", default=None, help="python of a venv with openvino-xai, e.g. /work/ovenv/bin/python")
    ap.add_argument("--decam-options", default="{}", help="JSON options passed to decam, e.g. '{\"grid\": 6}'")
    ap.add_argument("--variants", type=Path, default=None,
                    help="JSON file {name: {decam options}}; each runs as method decam:name")
    ap.add_argument("--limit", type=int, default=None,
                    help="N cases of the split per set, round-robin over objects (quick tuning, smoke tests)")
    ap.add_argument("--auc-step", type=int, default=1,
                    help="image rows' worth of pixels per deletion/insertion step (default 1 = W pixels: the "
                         "RISE protocol, 225 points at 224; 4 for quick tuning)")
    ap.add_argument("--tolerance", type=float, default=0.0, help="pointing-game tolerance, model pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=None, help="images per ONNX Runtime call")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--name", default=None, help="output file stem (default eval-<split>)")
    ap.add_argument("--no-cache", action="store_true", help="neither read nor write the map cache")
    ap.add_argument("--report-only", action="store_true", help="redraw md and plots from the json")
    ap.add_argument("--merge", default=None,
                    help="comma-separated output names of runs that differ only in --seed: write their per-image "
                         "seed means as --name (nothing is run)")
    ap.add_argument("--auto", type=float, default=None, metavar="STABILITY",
                    help="also run decam:auto / rise:auto (--budget auto at this stability threshold, each of "
                         "--budgets as the maximum) and tabulate them against the fixed budget (issue 21)")
    ap.add_argument("--auto-only", action="store_true",
                    help="with --auto: run only decam:auto / rise:auto, not the fixed budgets")
    ap.add_argument("--rows-from", default=None, metavar="NAME",
                    help="copy into this run's output the rows of output NAME (same split and AUC step) whose "
                         "method label and budget this run does not compute (e.g. the fixed-budget DE-CAM and "
                         "RISE rows of an earlier report, for paired differences without recomputing them)")
    ap.add_argument("--coverage", default=None, metavar="SEEDS",
                    help="comma-separated seeds: instead of the metrics, measure how often these seeds' maps lie "
                         "within 2 standard errors of --seed's (issue 21); writes <name>.md/.json")
    ap.add_argument("--estimate", action="store_true",
                    help="print the queries still to do and the expected time (rate probed now); run nothing")
    a = ap.parse_args(argv)
    name = a.name or f"eval-{a.split}"
    if a.merge:
        docs = [json.loads((a.out / f"{n.strip()}.json").read_text()) for n in a.merge.split(",") if n.strip()]
        if len(docs) < 2 or len({d["meta"]["seed"] for d in docs}) < len(docs):
            raise SystemExit("error: --merge needs two or more runs with different --seed")
        rows, meta = merge_seeds(docs)
        write_outputs(rows, meta, a.out, name)
        print((a.out / f"{name}.md").read_text())
        return
    if a.report_only:
        doc = json.loads((a.out / f"{name}.json").read_text())
        write_outputs(doc["rows"], doc["meta"], a.out, name)
        print((a.out / f"{name}.md").read_text())
        return
    try:
        decam_options = json.loads(a.decam_options)
        variants = json.loads(a.variants.read_text()) if a.variants else {}
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"error: --decam-options / --variants: {e}")
    if not isinstance(decam_options, dict) or not isinstance(variants, dict) or \
            not all(isinstance(v, dict) for v in variants.values()):
        raise SystemExit("error: --decam-options must be a JSON object, --variants a JSON object of objects")
    budgets = _ints(a.budgets)
    ov_budgets = _ints(a.ov_budgets) if a.ov_budgets else budgets
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    if not a.ov_python:
        methods = [m for m in methods if m not in ov_xai.METHODS]
    tasks = plan(methods, budgets, ov_budgets, decam_options, variants, a.auto, a.auto_only)
    for lb, t in tasks.items():
        if t["method"] == "decam":
            check_options("decam", t["options"], f"options of {lb}")
    sets = ["composites", "planted"] if a.set == "both" else [a.set]
    split = None if a.split == "all" else a.split
    data = {}
    for s in sets:
        d = evalset.load(s, split)
        if a.limit:
            pick = balanced_order(d["objects"])[:a.limit]
            d = {k: (v[pick] if isinstance(v, np.ndarray) else v) for k, v in d.items()}
        data[s] = d
    meta = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "split": a.split, "sets": sets,
            "cases": {s: int(len(d["targets"])) for s, d in data.items()}, "seed": a.seed,
            "auc_step": a.auc_step, "tolerance": a.tolerance, "budgets": budgets, "ov_budgets": ov_budgets,
            "tasks": {lb: {"method": t["method"], "options": t["options"], "budgets": t["budgets"],
                           "source": source_hash(t["method"])} for lb, t in tasks.items()},
            "cpu": os.cpu_count(), "load_average": list(os.getloadavg()), "batch_size": a.batch_size,
            "note": (f"Split `{a.split}` (bench/data/README.md). Deletion/insertion: RISE protocol, "
                     + ("step W pixels (225 points at 224x224)" if a.auc_step == 1 else
                        f"step {a.auc_step} x W pixels (coarser than the RISE protocol: for tuning only)")
                     + f"; pointing game tolerance {a.tolerance:g} px; seed {a.seed}. Seconds: the method's "
                     f"wall time on {os.cpu_count()} CPU cores, metrics excluded, measured when the map was made "
                     f"(a map from the cache keeps the seconds of the run that made it; load average at the "
                     f"start of the last run {os.getloadavg()[0]:.1f}).")}
    current = {(s, lb, b) for s in sets for lb, t in tasks.items() for b in t["budgets"]}
    cfgs = {lb: config_id(lb, t, a.seed) for lb, t in tasks.items()}

    def keep(r: dict) -> bool:   # rows of other tasks stay; rows of this run's tasks only with this config
        if (r["set"], r["label"], r["budget"]) not in current:
            return True
        return r["key"] == row_key(r["set"], r["index"], r["label"], r["budget"], cfgs[r["label"]], a.auc_step,
                                   a.tolerance)

    cache = None if a.no_cache else a.out / "cache"
    if a.coverage:
        rows = [r for s in sets for r in coverage(s, data[s], tasks, a, cache)]
        meta["note"] = (f"Split `{a.split}`; seeds {a.seed} vs {a.coverage}; cases "
                        + ", ".join(f"{s} {n}" for s, n in meta["cases"].items()) + ".")
        (a.out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        (a.out / f"{name}.md").write_text(coverage_markdown(rows, meta))
        print((a.out / f"{name}.md").read_text())
        return
    store = Store(a.out, name, meta, keep)
    if a.rows_from:
        src = json.loads((a.out / f"{a.rows_from}.json").read_text())
        if src["meta"].get("auc_step") != a.auc_step or src["meta"].get("split") != a.split:
            raise SystemExit(f"error: --rows-from {a.rows_from}: another split or AUC step")
        mine = {(s_, lb) for s_ in sets for lb in tasks}
        ids = {d_["index"][j] for s_, d_ in data.items() for j in range(len(d_["targets"]))}
        extra = [r for r in src["rows"] if r["set"] in sets and (r["set"], r["label"]) not in mine
                 and r["index"] in ids and r["key"] not in store.done]
        for r in extra:
            store.rows.append({**r, "copied_from": a.rows_from})
            store.done.add(r["key"])
        meta["rows_from"] = {"name": a.rows_from, "when": src["meta"].get("when"), "rows": len(extra)}
    if a.estimate:
        estimate(data, tasks, a, store, cache)
        return
    for s in sets:
        run_set(s, data[s], tasks, a, store, cache)
    store.write()
    print((a.out / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
