"""Where the black-box maps of a real vendor model put their evidence, with both ``--score``s.

PaddleOCR's text direction classifier (``models/ppocr_cls``, its own ``preprocess_fn``; sure:
p > 0.99 on most lines) on the 16 text lines of ``tests/data/vendors/ppocr/images`` (8 upright,
8 rotated 180 degrees), each pasted on a blank canvas twice its width (the line's background
colour, the line at a different place per image: left, centre or right), as a loose crop would
be. The vendor's signal is the text (the classifier decides the orientation from the glyphs),
so the *text half* is the region: the pointing game (the map's maximum inside it), the map's
mass inside it (0.5 = no better than chance) and the "no information" warnings, per method and
score. Writes ``bench/results/vendor_fn_maps.json`` and ``.md``.
Usage: ``python bench/vendor_fn_maps.py [--budget 600]``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from blackbox_cam.explainer.pipeline import explain_image
from blackbox_cam.io.images import load_image
from blackbox_cam.model.runtime import Classifier

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/ppocr_cls/ppocr_cls.onnx"
IMAGES = sorted((ROOT / "tests/data/vendors/ppocr/images").glob("*.png"))


def canvas(im: np.ndarray, where: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = im.shape[:2]
    out = np.empty((h, 2 * w, 3), np.float32)
    out[:] = np.median(np.concatenate([im[0], im[-1]]), axis=0)
    x0 = (0, w // 2, w)[where % 3]
    out[:, x0:x0 + w] = im
    text = np.zeros((h, 2 * w), bool)
    text[:, x0:x0 + w] = True
    return out, text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=600)
    ap.add_argument("--methods", default="decam,rise,occlusion,gradcam")
    a = ap.parse_args()
    load0 = os.getloadavg()
    rows = []
    for score in ("probability", "log-odds"):
        clf = Classifier(MODEL, score=score)
        for method in a.methods.split(","):
            hits, mass, warned, right, t0 = [], [], 0, 0, time.perf_counter()
            for i, p in enumerate(IMAGES):
                im, text = canvas(load_image(p), i)
                kw = {} if method == "gradcam" else {"window": 12} if method == "occlusion" else {"budget": a.budget}
                res = explain_image(clf, im, method, seed=0, **kw)
                s = res.saliency
                right += clf.label(res.target) == ("180" if "_180" in p.name else "0")
                warned += res.explanation.warning is not None
                hits.append(bool(s.max() > 0 and text.flat[np.argmax(s)]))
                mass.append(float(s[text].sum() / s.sum()) if s.sum() > 0 else 0.0)
            row = {"score": score, "method": method, "images": len(IMAGES), "pointing": float(np.mean(hits)),
                   "mass_on_text": float(np.mean(mass)), "warned": warned, "right_orientation": right,
                   "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = ROOT / "bench/results/vendor_fn_maps.json"
    out.write_text(json.dumps({"load_before": load0, "load_after": os.getloadavg(), "budget": a.budget,
                               "rows": rows}, indent=1))
    lines = ["| score | method | pointing (text half) | mass on the text half | warned |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['score']} | {r['method']} | {r['pointing']:.2f} | {r['mass_on_text']:.2f} | {r['warned']}/{r['images']} |"
              for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
