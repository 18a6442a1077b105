"""How the DE-CAM defaults were chosen (not a test): faithfulness of each design choice.

For each demo image, runs DE-CAM with several baselines / area weights at one budget and scores
every aggregation of the search's samples (combined, ridge regression, elite mean, best mask)
with the deletion and insertion AUC (RISE protocol, coarser steps to save time), beside RISE at
the same budget. Prints a Markdown table of means over images.

    python bench/tune_decam.py --budget 1000 [--images models/images/*.png]
"""
from __future__ import annotations

import argparse
import glob
import itertools
import time

import numpy as np

from blackbox_cam import Classifier, load_image
from blackbox_cam.methods.masks import upsample
from blackbox_cam.methods import METHODS
from blackbox_cam.methods.base import normalise
from blackbox_cam.metrics.causal import deletion, insertion


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/efficientnet_lite0.onnx")
    ap.add_argument("--images", nargs="*", default=sorted(glob.glob("models/images/*.png") + glob.glob("models/images/*.jpg")))
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--baselines", default="blur,zeros")
    ap.add_argument("--areas", default="0.1,0.3,1.0")
    args = ap.parse_args()
    clf = Classifier(args.model)
    h, w = clf.input_size
    rows: dict[str, list[tuple[float, float]]] = {}
    for path in args.images:
        x = clf.prepare(load_image(path))
        target = int(np.argmax(clf.probabilities(x[None])[0]))

        def score(name: str, sal: np.ndarray) -> None:
            d = deletion(clf.probabilities, x, sal, target, step=4 * w).auc
            i = insertion(clf.probabilities, x, sal, target, step=4 * w).auc
            rows.setdefault(name, []).append((d, i))

        t = time.perf_counter()
        r = METHODS["rise"].fn(clf, x, target, budget=args.budget, seed=0)
        score(f"rise b={args.budget}", r.saliency)
        for base, area in itertools.product(args.baselines.split(","), map(float, args.areas.split(","))):
            if base != "blur" and area != 0.3:
                continue
            e = METHODS["decam"].fn(clf, x, target, budget=args.budget, seed=0, baseline=base, area=area)
            for agg, gm in e.extra["grid_maps"].items():
                score(f"decam {base} area={area} {agg}", normalise(upsample(gm.astype(np.float32), (h, w))))
        print(f"{path}: {time.perf_counter() - t:.0f}s", flush=True)
    print("\n| variant | deletion AUC (lower better) | insertion AUC (higher better) | ins - del |")
    print("|---|---|---|---|")
    for name, v in rows.items():
        d, i = np.mean(v, axis=0)
        print(f"| {name} | {d:.3f} | {i:.3f} | {i - d:.3f} |")


if __name__ == "__main__":
    main()
