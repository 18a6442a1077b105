"""``--score probability`` against ``--score log-odds`` on held-out images: the measured decision.

For the planted CNN (``models/planted/planted.onnx``, logits; top p median ~0.99) and its sure
twin (``models/planted_sure/planted_sure.onnx``: the last layer x12 and a Softmax, p == 1.0 in
float32 on all 50 images), DE-CAM, RISE and occlusion explain the true class of each image of
``models/planted/heldout.npz`` with both scores. Measured per cell: the pointing game (the map's
maximum inside the planted object's box, 15 px tolerance as ``blackbox-cam compare``; an all-zero
map counts as a miss), the energy in the box, deletion and insertion AUC (always on the
*probability* of the planted model, so both scores are judged by the same yardstick), and how
many maps carried the "no information" warning. Writes ``bench/results/score_kind.json`` and
``.md``. Usage: ``python bench/score_kind.py [--images 50] [--budget 1000]``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from blackbox_cam.explainer.pipeline import explain_image
from blackbox_cam.metrics.causal import deletion, insertion
from blackbox_cam.metrics.localisation import energy_in_region, pointing_game
from blackbox_cam.model.runtime import Classifier

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"planted": ROOT / "models/planted/planted.onnx", "planted_sure": ROOT / "models/planted_sure/planted_sure.onnx"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--methods", default="decam,rise,occlusion")
    a = ap.parse_args()
    d = np.load(ROOT / "models/planted/heldout.npz")
    imgs, labels, boxes = d["images"][:a.images].astype(np.float32), d["labels"][:a.images], d["boxes"][:a.images]
    rows = []
    load0 = os.getloadavg()[0]
    judge = Classifier(MODELS["planted"])  # the yardstick for deletion / insertion (probabilities)
    for model, path in MODELS.items():
        for score in ("probability", "log-odds"):
            clf = Classifier(path, score=score)
            for method in a.methods.split(","):
                hits, energy, dels, ins, warn, t0 = [], [], [], [], 0, time.perf_counter()
                for im, lab, box in zip(imgs, labels, boxes):
                    budget = None if method == "occlusion" else a.budget
                    res = explain_image(clf, im, method, target=int(lab), budget=budget, seed=0)
                    s = res.saliency
                    warn += res.explanation.warning is not None
                    b = tuple(int(v) for v in box)
                    hits.append(bool(s.max() > 0) and pointing_game(s, b))
                    energy.append(energy_in_region(s, b))
                    x = judge.prepare(im)
                    dels.append(deletion(judge.probabilities, x, s, int(lab)).auc)
                    ins.append(insertion(judge.probabilities, x, s, int(lab)).auc)
                row = {"model": model, "score": score, "method": method, "images": len(imgs),
                       "pointing": float(np.mean(hits)), "energy": float(np.mean(energy)),
                       "deletion": float(np.mean(dels)), "insertion": float(np.mean(ins)), "warned": warn,
                       "seconds": round(time.perf_counter() - t0, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = ROOT / "bench/results/score_kind.json"
    out.write_text(json.dumps({"load_before": load0, "load_after": os.getloadavg()[0], "budget": a.budget,
                               "rows": rows}, indent=1))
    lines = ["| model | score | method | pointing | energy in box | deletion (lower better) | insertion | warned |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['score']} | {r['method']} | {r['pointing']:.2f} | {r['energy']:.3f} | "
                     f"{r['deletion']:.3f} | {r['insertion']:.3f} | {r['warned']}/{r['images']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
