"""Faithfulness vs. query budget: DE-CAM, RISE and occlusion (and OpenVINO XAI's RISE/AISE).

Not a test. For each data set (the bundled ImageNet model on its demo images, and the planted
model on held-out images whose evidence box is known), each method and each budget, it explains
the top-1 class and records deletion AUC, insertion AUC (RISE protocol, blackbox_cam.metrics),
the pointing game (planted only: the map's maximum inside the object's box, tolerance 0 px),
energy in the box, queries and the method's wall time. Results go to ``bench/results/``:
``quality.json`` (every row, written after each one, so a stopped run keeps what it did),
``quality.md`` (means over images) and ``quality.png`` (AUC vs. queries).

OpenVINO XAI (``openvino-xai``; black-box RISE and AISE on the same .onnx) needs numpy < 2, so it
usually lives in its own virtual environment: pass that environment's python with
``--ov-python``; the bench then runs it in a subprocess (``bench/ov_xai.py``, which imports only
numpy and openvino) on the same model-space inputs and scores its maps here with the same metrics.
``bench/evaluate.py`` is the evaluation on the issue-7 sets with intervals; this script stays for
the four demo images.

Quick run::

    python bench/bench_quality.py --budgets 250,1000 --imagenet-images 1 --planted-images 5

Full run (about an hour on 2 CPU cores)::

    python bench/bench_quality.py --ov-python /path/to/ov-venv/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


# -- OpenVINO XAI: bench/ov_xai.py (worker run in OpenVINO's environment) ----------------------
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ov_xai  # noqa: E402

OV_METHODS = ov_xai.METHODS


# -- our side ------------------------------------------------------------------------------------
def load_imagenet(n: int, batch_size: int | None = None):
    from blackbox_cam import Classifier, load_image
    clf = Classifier(ROOT / "models" / "efficientnet_lite0.onnx", device="cpu", batch_size=batch_size)
    names = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png"][:n]
    return clf, [(nm, load_image(ROOT / "models" / "images" / nm), None) for nm in names]


def load_planted(n: int, batch_size: int | None = None):
    from blackbox_cam import Classifier
    clf = Classifier(ROOT / "models" / "planted" / "planted.onnx", device="cpu", batch_size=batch_size)
    d = np.load(ROOT / "models" / "planted" / "heldout.npz")
    return clf, [(f"heldout_{i}", d["images"][i].astype(np.float32), tuple(int(v) for v in d["boxes"][i]))
                 for i in range(min(n, len(d["images"])))]


def score(clf, x, sal, target, box) -> dict:
    """The library's metrics of one model-resolution map (no ROAD; box in model pixels, no tolerance)."""
    from blackbox_cam.jobs.compare.job import MetricSettings, score_map
    return score_map(clf, x, sal, target, MetricSettings(road=False, tolerance=0.0), box)


def run_dataset(name, clf, items, methods, budgets, seed, rows, save, ov_python=None, ov_budgets=()):
    from blackbox_cam.explainer.pipeline import explain_image

    xs, targets = [], []
    for img_name, image, box in items:
        x = clf.prepare(image)
        t = int(np.argmax(clf.probabilities(x[None])[0]))
        xs.append(x)
        targets.append(t)
        for method, budget in ((m, b) for m in methods for b in budgets[m]):
            res = explain_image(clf, image, method, target=t, budget=budget, seed=seed)
            sal = res.explanation.saliency
            row = {"dataset": name, "image": img_name, "method": method, "budget": budget, "target": t,
                   "queries": res.explanation.queries, "seconds": res.explanation.seconds}
            row.update(score(clf, x, sal, t, box))
            rows.append(row)
            save()
            print(f"{name} {img_name} {method}@{budget}: del {row['deletion_auc']:.3f} ins "
                  f"{row['insertion_auc']:.3f} pg {row.get('pointing_game', '-')} {row['seconds']:.1f}s", flush=True)
    if ov_python and ov_budgets:
        for row in run_openvino(ov_python, clf, name, items, xs, targets, ov_budgets):
            rows.append(row)
        save()


def run_openvino(ov_python, clf, name, items, xs, targets, budgets):
    try:
        res = ov_xai.explain(ov_python, clf.path, np.stack(xs), targets, budgets,
                             softmax=not clf.outputs_probabilities)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return []
    out = []
    for (method, budget), r in res.items():
        for i, ((img_name, _, box), x, t) in enumerate(zip(items, xs, targets)):
            sal = r["maps"][i]
            if sal.shape != x.shape[1:]:
                from blackbox_cam.io.images import resize_map
                sal = resize_map(sal, x.shape[1:])
            row = {"dataset": name, "image": img_name, "method": method, "budget": int(budget), "target": t,
                   "queries": r["queries"][i], "seconds": r["seconds"][i]}
            row.update(score(clf, x, sal, t, box))
            out.append(row)
            print(f"{name} {img_name} {method}@{budget}: del {row['deletion_auc']:.3f} "
                  f"ins {row['insertion_auc']:.3f} {r['seconds'][i]:.1f}s", flush=True)
    return out


# -- reporting -------------------------------------------------------------------------------------
def aggregate(rows):
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"], r["budget"]), []).append(r)
    out = []
    for (ds, m, b), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        agg = {"dataset": ds, "method": m, "budget": b, "n": len(rs)}
        for k in ("queries", "deletion_auc", "insertion_auc", "pointing_game", "energy_in_box", "seconds"):
            v = [r[k] for r in rs if r.get(k) is not None]
            agg[k] = float(np.mean(v)) if v else None
        out.append(agg)
    return out


def markdown(agg, meta) -> str:
    note = " / ".join(dict.fromkeys(meta["note"].split(" / ")))          # appended runs repeat it
    lines = [f"# Faithfulness vs. budget ({meta['when']})", "", note, "",
             "| data set | method | budget | images | queries | deletion AUC (lower better) | "
             "insertion AUC (higher better) | pointing game | energy in box | seconds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    f = lambda v, d=3: "" if v is None else f"{v:.{d}f}"
    for a in agg:
        lines.append(f"| {a['dataset']} | {a['method']} | {a['budget']} | {a['n']} | {f(a['queries'], 0)} | "
                     f"{f(a['deletion_auc'])} | {f(a['insertion_auc'])} | {f(a['pointing_game'], 2)} | "
                     f"{f(a['energy_in_box'])} | {f(a['seconds'], 2)} |")
    return "\n".join(lines) + "\n"


COLORS = {"decam": (214, 39, 40), "rise": (31, 119, 180), "occlusion": (44, 160, 44),
          "ov-rise": (148, 103, 189), "ov-aise": (255, 127, 14)}


def plot(agg, path: Path) -> None:
    """AUC vs. budget (log x) per data set: deletion left, insertion right; drawn with Pillow."""
    from PIL import Image, ImageDraw, ImageFont
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:
        font = ImageFont.load_default()
    datasets = sorted({a["dataset"] for a in agg})
    pw, ph, m = 420, 300, 55
    img = Image.new("RGB", (2 * pw + 40, len(datasets) * (ph + 40) + 70), "white")
    d = ImageDraw.Draw(img)
    budgets = sorted({a["budget"] for a in agg})
    lo, hi = np.log(min(budgets)), np.log(max(budgets))
    hi = hi if hi > lo else lo + 1
    for r, ds in enumerate(datasets):
        for c, key in enumerate(("deletion_auc", "insertion_auc")):
            x0, y0 = 20 + c * (pw + 10), 10 + r * (ph + 40)
            vals = [a[key] for a in agg if a["dataset"] == ds and a[key] is not None]
            vmin, vmax = min(vals), max(vals)
            pad = max(0.02, 0.1 * (vmax - vmin))
            vmin, vmax = max(0.0, vmin - pad), min(1.0, vmax + pad)
            px = lambda b: x0 + m + (np.log(b) - lo) / (hi - lo) * (pw - m - 15)
            py = lambda v: y0 + ph - 35 - (v - vmin) / (vmax - vmin) * (ph - 70)
            d.rectangle([x0 + m, y0 + 25, x0 + pw - 10, y0 + ph - 30], outline=(160, 160, 160))
            d.text((x0 + m, y0 + 5), f"{ds}: {key.replace('_', ' ')} "
                   f"({'lower' if key.startswith('del') else 'higher'} is better)", fill="black", font=font)
            last = -1e9
            for b in budgets:
                d.line([px(b), y0 + ph - 30, px(b), y0 + ph - 26], fill="black")
                if px(b) - last >= 38:                                  # skip labels that would overlap
                    d.text((px(b) - 12, y0 + ph - 24), str(b), fill="black", font=font)
                    last = px(b)
            for t in np.linspace(vmin, vmax, 5):
                d.text((x0 + 5, py(t) - 7), f"{t:.3f}", fill="black", font=font)
                d.line([x0 + m - 4, py(t), x0 + m, py(t)], fill="black")
            d.text((x0 + pw // 2 - 20, y0 + ph - 10), "budget (queries)", fill="black", font=font)
            for meth in sorted({a["method"] for a in agg if a["dataset"] == ds}):
                pts = [(px(a["budget"]), py(a[key])) for a in agg
                       if a["dataset"] == ds and a["method"] == meth and a[key] is not None]
                col = COLORS.get(meth, (0, 0, 0))
                if len(pts) > 1:
                    d.line(pts, fill=col, width=2)
                for p in pts:
                    d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=col)
    lx = 30
    for meth in sorted({a["method"] for a in agg}):
        col = COLORS.get(meth, (0, 0, 0))
        yy = img.height - 30
        d.rectangle([lx, yy, lx + 14, yy + 10], fill=col)
        d.text((lx + 20, yy - 2), meth, fill="black", font=font)
        lx += 110
    img.save(path, format="PNG")


def write_outputs(rows, meta, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(rows)
    for name, text in (("quality.md", markdown(agg, meta)),
                       ("quality.json", json.dumps({"meta": meta, "rows": rows, "summary": agg}, indent=1))):
        tmp = out / f"{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    if agg:
        plot(agg, out / "quality.png.tmp")                       # only the final plot: cheap to redraw
        os.replace(out / "quality.png.tmp", out / "quality.png")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", default="250,500,1000,2000,4000", help="comma-separated query budgets")
    ap.add_argument("--methods", default="decam,rise,occlusion")
    ap.add_argument("--rise-reference", type=int, default=5000,
                    help="extra RISE budget as the reference point (0: none)")
    ap.add_argument("--imagenet-images", type=int, default=4)
    ap.add_argument("--planted-images", type=int, default=20)
    ap.add_argument("--datasets", default="planted,imagenet")
    ap.add_argument("--ov-python", default=None,
                    help="python of an environment with openvino-xai (default: this one, if it imports)")
    ap.add_argument("--ov-budgets", default=None, help="budgets for OpenVINO XAI (default: --budgets)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="images per ONNX Runtime call for our methods (default: Classifier's choice)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--report-only", action="store_true", help="redraw table and plot from quality.json")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows of other data sets already in quality.json (run data sets separately)")
    a = ap.parse_args(argv)
    if a.report_only:
        doc = json.loads((a.out / "quality.json").read_text())
        write_outputs(doc["rows"], doc["meta"], a.out)
        return
    budgets = [int(b) for b in a.budgets.split(",") if b.strip()]
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    per_method = {m: list(budgets) for m in methods}
    if "rise" in per_method and a.rise_reference and a.rise_reference not in per_method["rise"]:
        per_method["rise"].append(a.rise_reference)
    ov_python = a.ov_python
    if ov_python is None:
        try:
            import openvino_xai  # noqa: F401
            ov_python = sys.executable
        except ImportError:
            ov_python = None
    ov_budgets = [int(b) for b in (a.ov_budgets or a.budgets).split(",") if b.strip()]
    meta = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "budgets": per_method,
            "imagenet_images": a.imagenet_images, "planted_images": a.planted_images, "seed": a.seed,
            "openvino_xai": bool(ov_python), "ov_budgets": ov_budgets if ov_python else [],
            "cpu": os.cpu_count(), "batch_size": a.batch_size,
            "note": (f"Means over images. ImageNet: efficientnet_lite0, {a.imagenet_images} demo image(s); planted: "
                     f"{a.planted_images} held-out image(s), pointing game with tolerance 0 px. Seconds: the "
                     f"method's wall time on {os.cpu_count()} shared CPU cores (metrics excluded). "
                     f"OpenVINO XAI {'included' if ov_python else 'not available'}.")}
    datasets = [d.strip() for d in a.datasets.split(",") if d.strip()]
    rows: list[dict] = []
    if a.append and (a.out / "quality.json").exists():
        old = json.loads((a.out / "quality.json").read_text())
        rows = [r for r in old["rows"] if r["dataset"] not in datasets]
        if rows and old["meta"]["note"] != meta["note"]:
            meta["note"] = f"{old['meta']['note']} / {meta['note']}"
    save = lambda: write_outputs(rows, meta, a.out)
    loaders = {"imagenet": lambda: load_imagenet(a.imagenet_images, a.batch_size),
               "planted": lambda: load_planted(a.planted_images, a.batch_size)}
    for ds in datasets:
        clf, items = loaders[ds]()
        run_dataset(ds, clf, items, methods, per_method, a.seed, rows, save, ov_python, ov_budgets)
    save()
    print((a.out / "quality.md").read_text())


if __name__ == "__main__":
    main()
