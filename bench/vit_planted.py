"""Pointing game of the white-box maps of a vision transformer beside DE-CAM and RISE (issue 19).

    python bench/vit_planted.py [--n 50] [--budget 400] [--out bench/results/vit_planted.json]

Model: models/planted_vit/planted_vit.onnx (and planted_vit_ln13.onnx, LayerNorm decomposed,
for the white-box methods), trained by models/train_planted_vit.py. Images: the 50 held-out
images of models/planted/heldout.npz with their object boxes; target = the true label.
Measures: pointing game at 0 px tolerance (the map's maximum inside the object box;
blackbox_cam.metrics.pointing_game) and the share of the map's mass inside the box
(energy_in_region), means over the images with a 95 % Wilson interval for the pointing game.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np

from blackbox_cam import Classifier
from blackbox_cam.explainer.pipeline import explain_image
from blackbox_cam.metrics.localisation import energy_in_region, pointing_game

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--budget", type=int, default=400)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "vit_planted.json"))
    args = ap.parse_args()
    d = np.load(os.path.join(ROOT, "models", "planted", "heldout.npz"))
    X, Y, B = d["images"][:args.n], d["labels"][:args.n], d["boxes"][:args.n]
    runs = [("planted_vit", "gradcam", {}), ("planted_vit_ln13", "gradcam", {}),
            ("planted_vit", "gradcam", {"layer": "/patch_embed/Conv_output_0"}),  # the old default
            ("planted_vit", "gradcam", {"layer": "/blocks/blocks.2/Add_1_output_0"}),
            ("planted_vit", "gradcam", {"layer": "/blocks/blocks.3/Add_1_output_0"}),
            ("planted_vit", "layercam", {}),
            ("planted_vit", "rollout", {}), ("planted_vit_ln13", "rollout", {}),
            ("planted_vit", "attention-grad", {}), ("planted_vit_ln13", "attention-grad", {}),
            ("planted_vit", "decam", {"budget": args.budget}), ("planted_vit", "rise", {"budget": args.budget})]
    rows = []
    for stem, method, opts in runs:
        clf = Classifier(os.path.join(ROOT, "models", "planted_vit", stem + ".onnx"))
        acc = float((clf.probabilities(np.stack([clf.prepare(x.astype(np.float32)) for x in X])).argmax(1) == Y).mean())
        hits, energy, t0 = [], [], time.perf_counter()
        for i in range(len(X)):
            res = explain_image(clf, X[i].astype(np.float32), method, target=int(Y[i]), seed=i, **opts)
            hits.append(pointing_game(res.saliency, B[i], tolerance=0))
            energy.append(energy_in_region(res.saliency, B[i]))
        k, n = int(sum(hits)), len(hits)
        lo, hi = wilson(k, n)
        row = {"model": stem, "method": method, "options": opts, "n": n, "accuracy": acc,
               "pointing": k / n, "pointing_ci95": [round(lo, 3), round(hi, 3)],
               "energy": float(np.mean(energy)), "s_per_image": (time.perf_counter() - t0) / n}
        rows.append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
