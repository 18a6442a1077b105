"""Per-detection maps: faithfulness on the planted-cue detector, and what explaining a detection costs.

Not a test: it prints tables (the README's "Explaining a detection") and writes JSON to
bench/results/. Two parts:

``faithfulness`` (default)
    The planted-cue detector (models/planted_detector.py: a YOLO-style head in Ultralytics'
    ``[B, 4 + C, A]`` layout whose class *and* existence are decided by a 7 x 7 px mark in a
    corner of each shape, while the box covers the whole shape) on its held-out scenes
    (heldout.npz, seed 2, never trained on). Every detection matched to a planted object
    (IoU >= 0.5, same class) is explained, all detections of a scene from one query set, by each
    method at the same budget; per detection:

    * ``pointing``: the map's peak within ``TOLERANCE`` px of the mark's box (pointing game,
      Zhang et al. 2018; 4 px = half a D-RISE grid cell at 128 px);
    * ``energy``: the share of the map's mass inside the mark's box (Wang et al. 2020);
    * ``deletion`` / ``insertion``: the RISE causal curves (Petsiuk et al. 2018) with the
      detection's D-RISE similarity as the score, ``2 W`` pixels per step (65 points).

    The black-box methods mask to ``--baselines``' first value (default ``mean``: the image's mean
    colour) for every measure, and drise / decam also to the others (default ``zeros``: black, the
    D-RISE paper's) for pointing and energy: this detector reports a detection where a shape's box
    is painted black (its similarity stays 0.71), so black masks add evidence of their own.
    Means with 95 % percentile-bootstrap intervals over detections (2000 resamples, seed 0), and
    the paired difference DE-CAM - D-RISE per detection with its interval. ``--joint`` also runs
    DE-CAM once per detection (each with the full budget) on scenes with several detections, to
    measure what explaining them together from one search costs in faithfulness.

``cost`` (``--cost MODEL``)
    Seconds and peak memory (each method in a fresh child process: ``ru_maxrss``) of ``drise``,
    ``decam`` and ``occlusion`` at ``--budget`` queries explaining 1 and 5 detections of one
    image from one query set (the top detections of a random-weight YOLOv8n export at 320 x 320:
    what is measured is the cost, not the map), alternated 1, 5, 5, 1 in one process and the
    faster of each pair kept (the machine is shared): CPU seconds of the process (all threads;
    what the explanation costs, less sensitive than wall time to other jobs on the cores), wall
    seconds, the ratio 5 / 1 on CPU time, and the wall seconds inside the model's own calls.

    python bench/bench_detection.py                       # faithfulness, 1000 queries
    python bench/bench_detection.py --cost /tmp/yolov8n_320.onnx
    python bench/bench_detection.py --figure              # docs/img/detection_planted.png
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blackbox_cam.explainer.detection_maps import choose_targets, explain_detections, score_detections  # noqa: E402
from blackbox_cam.methods import METHODS  # noqa: E402
from blackbox_cam.methods.targets import box_iou  # noqa: E402
from blackbox_cam.metrics import energy_in_region, pointing_game  # noqa: E402
from blackbox_cam.metrics.detection import detection_deletion, detection_insertion  # noqa: E402
from blackbox_cam.model.detector import Detector  # noqa: E402

PLANTED = ROOT / "models/planted_detector/planted_detector.onnx"
HELDOUT = ROOT / "models/planted_detector/heldout.npz"
TOLERANCE = 4.0
BLACKBOX = ("drise", "decam", "occlusion")
WHITEBOX = ("gradcam", "eigencam")  # the detection-gradcam branch's, when they explain detections
#: The planted head is one Conv on the neck (no Ultralytics levels), so --layer auto has no map: the
#: white-box methods read the neck's last map, the one the head's 1 x 1 Conv reads.
NECK = "/neck/neck.1/neck.1.2/Mul_output_0"


def bootstrap(values, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95 % percentile-bootstrap interval."""
    v = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n, len(v)))].mean(axis=1)
    return float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def matched(scored, held, i: int):
    """Positions of detections matched to a planted object (IoU >= 0.5, same class) and their cue boxes."""
    k = int(held["count"][i])
    gt, cues, cls = held["boxes"][i, :k], held["cues"][i, :k], held["classes"][i, :k]
    keep, cue = [], []
    used = set()
    if len(scored) and k:
        ov = box_iou(scored.image_boxes, gt)
        for d in range(len(scored)):
            j = int(ov[d].argmax())
            if ov[d, j] >= 0.5 and j not in used and int(scored.detections.classes[d]) == int(cls[j]):
                used.add(j)
                keep.append(d)
                cue.append(cues[j])
    return keep, cue, k


def faithfulness(args) -> dict:
    det = Detector(PLANTED, device="cpu")
    held = np.load(HELDOUT)
    calls = {}
    for base in args.baselines.split(","):
        for m in BLACKBOX:
            if base == args.baselines.split(",")[0] or m != "occlusion":
                label = m if base == args.baselines.split(",")[0] else f"{m} ({base})"
                calls[label] = METHODS[m].bind(args.budget, det.input_size, baseline=base)
    for m in WHITEBOX:
        if m in METHODS and "detection" in METHODS[m].kinds:
            calls[m] = METHODS[m].bind(None, det.input_size, layer=NECK)
    if args.methods:
        calls = {k: v for k, v in calls.items() if k.split(" ")[0] in args.methods.split(",")}
    methods = list(calls)
    rows: dict[str, list[dict]] = {m: [] for m in methods}
    joint: list[dict] = []
    n_obj = n_det = n_match = 0
    t_all = time.perf_counter()
    scenes = range(min(args.scenes, len(held["images"])))
    for i in scenes:
        image = held["images"][i].astype(np.float32)
        scored = score_detections(det, image)
        keep, cues, k = matched(scored, held, i)
        n_obj, n_det, n_match = n_obj + k, n_det + len(scored), n_match + len(keep)
        if not keep:
            continue
        targets = choose_targets(det, scored).select(keep)

        def score_fn(batch, targets=targets):
            return targets.scores(det, batch)

        for m in methods:
            t0 = time.perf_counter()
            results = explain_detections(det, scored, calls[m], targets, seed=args.seed)
            secs, queries = time.perf_counter() - t0, results[0].explanation.queries
            for col, (res, cue) in enumerate(zip(results, cues)):
                sal = res.saliency
                row = {"scene": i, "detection": keep[col], "pointing": float(pointing_game(sal, cue, tolerance=TOLERANCE)),
                       "energy": energy_in_region(sal, cue), "queries": queries, "seconds": secs,
                       "targets": len(results)}
                if not args.no_curves and "(" not in m:
                    row["deletion"] = detection_deletion(score_fn, scored.x, sal, col, step=2 * sal.shape[1]).auc
                    row["insertion"] = detection_insertion(score_fn, scored.x, sal, col, step=2 * sal.shape[1]).auc
                rows[m].append(row)
        if args.joint and len(keep) > 1 and "decam" in methods:
            for col in range(len(keep)):
                res = explain_detections(det, scored, calls["decam"], targets.select([col]), seed=args.seed)[0]
                joint.append({"scene": i, "detection": keep[col],
                              "pointing": float(pointing_game(res.saliency, cues[col], tolerance=TOLERANCE)),
                              "energy": energy_in_region(res.saliency, cues[col])})
        print(f"scene {i}: {len(scored)} detection(s), {len(keep)} matched ({time.perf_counter() - t_all:.0f} s)",
              flush=True)
    return {"methods": methods, "rows": rows, "joint": joint, "objects": n_obj, "detections": n_det,
            "matched": n_match, "budget": args.budget, "tolerance": TOLERANCE,
            "seconds": time.perf_counter() - t_all}


def report(out: dict) -> None:
    keys = ["pointing", "energy", "deletion", "insertion"]
    print(f"\nplanted-cue detector, {out['matched']} matched detections of {out['objects']} planted objects "
          f"({out['detections']} detections), budget {out['budget']} queries per image (all its detections "
          f"from one query set), pointing tolerance {out['tolerance']:g} px\n")
    print("| method | pointing on the cue | energy in the cue | deletion (lower better) | insertion | s / image |")
    print("|---|---|---|---|---|---|")
    for m in out["methods"]:
        rs = out["rows"][m]
        if not rs:
            continue
        cells = []
        for k in keys:
            if k not in rs[0]:
                cells.append("-")
                continue
            mu, lo, hi = bootstrap([r[k] for r in rs])
            cells.append(f"{mu:.3f} [{lo:.3f}, {hi:.3f}]")
        per_image = {r["scene"]: r["seconds"] for r in rs}
        print(f"| {m} | " + " | ".join(cells) + f" | {np.mean(list(per_image.values())):.1f} |")
    if "decam" in out["rows"] and "drise" in out["rows"] and out["rows"]["decam"]:
        print("\npaired per detection, DE-CAM - D-RISE (95 % bootstrap interval):\n")
        for k in keys:
            if k not in out["rows"]["decam"][0]:
                continue
            d = [a[k] - b[k] for a, b in zip(out["rows"]["decam"], out["rows"]["drise"])]
            mu, lo, hi = bootstrap(d)
            better = (mu < 0) if k == "deletion" else (mu > 0)
            verdict = "DE-CAM ahead" if better and (hi < 0 if k == "deletion" else lo > 0) else (
                "D-RISE ahead" if (lo > 0 if k == "deletion" else hi < 0) else "no difference beyond the interval")
            print(f"- {k}: {mu:+.3f} [{lo:+.3f}, {hi:+.3f}]: {verdict}")
    if out["joint"]:
        sel = {(r["scene"], r["detection"]) for r in out["joint"]}
        together = [r for r in out["rows"]["decam"] if (r["scene"], r["detection"]) in sel]
        print(f"\nDE-CAM on scenes with several detections ({len(sel)} detections): one search for all of them "
              "(budget per image) vs one search per detection (budget per detection)")
        for k in ("pointing", "energy"):
            a, b = bootstrap([r[k] for r in together]), bootstrap([r[k] for r in out["joint"]])
            print(f"- {k}: together {a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}], separately {b[0]:.3f} [{b[1]:.3f}, {b[2]:.3f}]")


def one_cost(model: str, image: str, method: str, targets: int, budget: int) -> dict:
    """One method explaining 1 and ``targets`` detections, alternated ``1, T, T, 1`` in this process (so
    load drift on a shared machine hits both alike); the faster of each pair is kept. Also the time
    inside the model's own calls (``Detector.candidates``), which is the same for both."""
    from blackbox_cam.io.images import read_image
    det = Detector(model, device="cpu", conf=0.0, max_detections=targets)
    img, _ = read_image(image)
    scored = score_detections(det, img)
    chosen = choose_targets(det, scored)
    call = METHODS[method].bind(budget, det.input_size)
    # load (or compile) the Numba kernels before the clock starts: a cold cache is not the method's cost
    METHODS[method].bind(12, det.input_size).run_targets(det, scored.x, chosen, seed=1)
    inner = det.candidates
    spent = [0.0]

    def timed(x):
        t = time.perf_counter()
        try:
            return inner(x)
        finally:
            spent[0] += time.perf_counter() - t

    det.candidates = timed
    runs: dict[int, list[tuple[float, float, float]]] = {1: [], chosen.count: []}
    for t in (1, chosen.count, chosen.count, 1):
        spent[0] = 0.0
        t0, c0 = time.perf_counter(), time.process_time()
        res = explain_detections(det, scored, call, chosen.select(range(t)), seed=0)
        runs[t].append((time.process_time() - c0, time.perf_counter() - t0, spent[0]))
    best = {t: min(v) for t, v in runs.items()}
    T = chosen.count
    return {"method": method, "targets": T, "cpu_1": best[1][0], "cpu_T": best[T][0],
            "seconds_1": best[1][1], "model_seconds_1": best[1][2],
            "seconds_T": best[T][1], "model_seconds_T": best[T][2],
            "ratio": best[T][0] / best[1][0], "wall_ratio": best[T][1] / best[1][1],
            "queries": res[0].explanation.queries,
            "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def cost(args) -> dict:
    out = []
    methods = args.cost_methods.split(",")
    for method in methods:
        cmd = [sys.executable, __file__, "--one", method, "5", "--cost", args.cost, "--budget", str(args.budget)]
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if r.returncode:
            print(r.stderr[-2000:])
            raise SystemExit(1)
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(out[-1], flush=True)
    print(f"\n{Path(args.cost).name}, {args.budget} queries, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n")
    print("| method | CPU s, 1 detection | CPU s, 5 detections | ratio (CPU) | wall s, 1 / 5 | peak memory |")
    print("|---|---|---|---|---|---|")
    for r in out:
        print(f"| {r['method']} | {r['cpu_1']:.1f} | {r['cpu_T']:.1f} | {r['ratio']:.2f} | "
              f"{r['seconds_1']:.1f} / {r['seconds_T']:.1f} | {r['maxrss_mib']:.0f} MiB |")
    return {"cases": out, "model": args.cost, "budget": args.budget, "load": os.getloadavg(),
            "cpu": platform.processor() or platform.machine()}


def figure(args) -> None:
    """docs/img/detection_planted.png: each method's map of every detection of held-out scene 6
    (three detections), box and label drawn, and the scene with its planted marks."""
    from PIL import Image, ImageDraw

    from blackbox_cam.pictures.display import stack  # noqa: F401  (the display helpers' font)
    det = Detector(PLANTED, device="cpu")
    held = np.load(HELDOUT)
    i = 6
    scored = score_detections(det, held["images"][i].astype(np.float32))
    targets = choose_targets(det, scored)
    rows = [("drise", {"baseline": "mean"}), ("decam", {"baseline": "mean"}), ("occlusion", {"baseline": "mean"}),
            ("drise", {"baseline": "zeros"}), ("gradcam", {"layer": NECK}), ("eigencam", {"layer": NECK})]
    tile, pad, label_w = 192, 4, 150
    canvas = Image.new("RGB", (label_w + targets.count * (tile + pad), len(rows) * (tile + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (m, opt) in enumerate(rows):
        if m not in METHODS:
            continue
        call = METHODS[m].bind(None if METHODS[m].whitebox else args.budget, det.input_size, **opt)
        res = explain_detections(det, scored, call, targets, seed=0)
        name = m if m in ("gradcam", "eigencam") else f"{m}\n{opt['baseline']} baseline"
        q = res[0].explanation.queries
        draw.text((6, r * (tile + pad) + tile // 2 - 14), f"{name}\n{q} quer{'y' if q == 1 else 'ies'}", fill="black")
        for k, x in enumerate(res):
            canvas.paste(x.overlay().resize((tile, tile), Image.NEAREST), (label_w + k * (tile + pad), r * (tile + pad)))
    out = ROOT / "docs/img/detection_planted.png"
    canvas.save(out)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--scenes", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-curves", action="store_true")
    ap.add_argument("--joint", action="store_true")
    ap.add_argument("--baselines", default="mean,zeros",
                    help="Baselines of the black-box methods: the first for every method and the curves, the "
                         "others for drise and decam only (pointing and energy).")
    ap.add_argument("--methods", default=None,
                    help="Only these methods (comma-separated; e.g. drise with --baselines mean,zeros,blur), "
                         "results to detection_faithfulness_<methods>.json.")
    ap.add_argument("--cost", default=None, metavar="MODEL")
    ap.add_argument("--cost-methods", default=",".join(BLACKBOX))
    ap.add_argument("--image", default=str(ROOT / "models/images/astronaut.png"))
    ap.add_argument("--one", nargs=2, default=None)
    ap.add_argument("--figure", action="store_true", help="Write docs/img/detection_planted.png and stop.")
    args = ap.parse_args()
    if args.figure:
        figure(args)
        return
    if args.one:
        print(json.dumps(one_cost(args.cost, args.image, args.one[0], int(args.one[1]), args.budget)))
        return
    res_dir = ROOT / "bench/results"
    res_dir.mkdir(exist_ok=True)
    load = os.getloadavg()
    if args.cost:
        out = cost(args)
        name = f"detection_cost_{args.cost_methods.replace(',', '_')}.json"
    else:
        out = faithfulness(args)
        report(out)
        name = f"detection_faithfulness{'_' + args.methods.replace(',', '_') if args.methods else ''}.json"
    out["load_before"] = load
    out["load_after"] = os.getloadavg()
    (res_dir / name).write_text(json.dumps(out, indent=1))
    print(f"\nload average before {load[0]:.1f}, after {out['load_after'][0]:.1f} (2 cores, shared); "
          f"-> bench/results/{name}")


if __name__ == "__main__":
    main()
