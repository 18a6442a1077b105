"""Maps made after the search from one DE-CAM run per (case, seed): a tuning aid (not a test).

Issue 30 asked whether DE-CAM at 200 queries can point at the object as often as RISE at 2000.
Each variant below is computed from the *same* search (``extra["grid_maps"]`` and the returned
map), so the paired differences measure the aggregation alone, not seed luck:

* ``default``: the map DE-CAM returns (ridge x elite);
* ``regression`` / ``elite``: its two factors alone;
* ``blur<S>``: the map smoothed with a Gaussian of ``S`` pixels at 224 (scaled to the input size);
* ``consensus<S>``: the map times the square root of its own ``S``-pixel blur (each pixel weighted
  by the evidence around it, so isolated peaks, the noise of a small budget, sink).

Deletion and insertion AUC with ``--auc-step`` rows per step (4 = the tuning protocol of
``bench/evaluate.py``), pointing game at 0 px, energy in the box; the table gives each variant's
mean and its paired difference to ``default`` (mean +- 1.99 standard errors).

    PYTHONPATH=. python bench/decam_posthoc.py --split tune --budget 200 --seeds 0,1,2
    PYTHONPATH=. python bench/decam_posthoc.py --split tune --budget 2000 --seeds 0 --options '{"alpha": 10}'
    PYTHONPATH=. python bench/decam_posthoc.py --set planted --split tune --budget 500
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evalset  # noqa: E402
from decam_variants import print_paired  # noqa: E402

from blackbox_cam import Classifier, metrics  # noqa: E402
from blackbox_cam.explainer.pipeline import explain_image  # noqa: E402
from blackbox_cam.methods.base import normalise  # noqa: E402


def variants(grid_maps: dict, sal: np.ndarray, sigmas: list[int]) -> dict[str, np.ndarray]:
    scale = sal.shape[0] / 224
    out = {"default": sal, "regression": normalise(grid_maps["regression"]), "elite": normalise(grid_maps["elite"])}
    for s in sigmas:
        blur = ndimage.gaussian_filter(sal, s * scale)
        out[f"blur{s}"] = normalise(blur)
        out[f"consensus{s}"] = normalise(sal * np.sqrt(np.maximum(blur, 0.0)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="composites", choices=("composites", "planted"))
    ap.add_argument("--split", default="tune", choices=("tune", "report"))
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--options", default="{}", help="DE-CAM options as JSON")
    ap.add_argument("--sigmas", default="12,32")
    ap.add_argument("--auc-step", type=int, default=4)
    args = ap.parse_args()
    d = evalset.load(args.set, args.split)
    clf = Classifier(d["model"])
    seeds = [int(s) for s in args.seeds.split(",")]
    sigmas = [int(s) for s in args.sigmas.split(",")]
    rows: dict[str, list] = {}
    for i in range(len(d["targets"])):
        img, box, tg = d["images"][i].astype(np.float32), d["boxes"][i], int(d["targets"][i])
        x = clf.prepare(img)
        step = args.auc_step * x.shape[2]
        for seed in seeds:
            r = explain_image(clf, img, "decam", target=tg, budget=args.budget, seed=seed, **json.loads(args.options))
            for k, m in variants(r.explanation.extra["grid_maps"], r.saliency, sigmas).items():
                rows.setdefault(k, []).append((metrics.deletion(clf.probabilities, x, m, tg, step=step).auc,
                                               metrics.insertion(clf.probabilities, x, m, tg, step=step).auc,
                                               float(metrics.pointing_game(m, box, tolerance=0)),
                                               metrics.energy_in_region(m, box)))
        print(d["names"][i], " ".join(f"{k}:{int(sum(v[2] for v in rows[k][-len(seeds):]))}" for k in rows),
              flush=True)
    print(f"\n{args.set} {args.split}, budget {args.budget}, seeds {seeds}, options {args.options}, "
          f"AUC step {args.auc_step} rows; paired difference to default (+- 1.99 s.e.)\n")
    print_paired(rows, first="map")  # the first set is "default"

if __name__ == "__main__":
    main()
