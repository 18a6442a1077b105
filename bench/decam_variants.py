"""DE-CAM option sets side by side, each with its own search, paired on the same cases and seeds
(a tuning aid, not a test).

Every ``NAME=JSON`` is a set of DE-CAM options; the first is the reference of the paired
differences (mean +- 1.99 standard errors over cases x seeds). Deletion and insertion AUC with
``--auc-step`` rows per step (4 = the tuning protocol of ``bench/evaluate.py``), pointing game at
0 px, energy in the box. ``--rise`` adds RISE at that budget (seed 0) as a reference row.

    PYTHONPATH=. python bench/decam_variants.py --split tune --budget 200 --seeds 0,1,2 'old={"probe": 0}' 'new={}'
    PYTHONPATH=. python bench/decam_variants.py --set planted --budget 500 'old={"probe": 0}' 'new={}'

``--save runs.json`` keeps every run's four measures (``runs`` in case-major, seed-minor order, per
variant) for pairings the table does not print, e.g. each case's seed mean against RISE's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evalset  # noqa: E402

from blackbox_cam import Classifier, metrics  # noqa: E402
from blackbox_cam.explainer.pipeline import explain_image  # noqa: E402


def measure(clf, x, m, box, tg, step) -> tuple[float, float, float, float]:
    return (metrics.deletion(clf.probabilities, x, m, tg, step=step).auc,
            metrics.insertion(clf.probabilities, x, m, tg, step=step).auc,
            float(metrics.pointing_game(m, box, tolerance=0)), metrics.energy_in_region(m, box))


def print_paired(rows: dict[str, list], labels: dict[str, str] | None = None, first: str = "variant") -> None:
    """A markdown table of each row set's means (deletion, insertion, pointing with its misses, energy)
    and its paired difference to the first set (+- 1.99 standard errors over the paired runs)."""
    print(f"| {first} | deletion | insertion | pointing (misses) | energy |\n|---|---|---|---|---|")
    base = np.array(next(iter(rows.values())))
    for k, v in rows.items():
        a = np.array(v)
        dd = a - base
        h = 1.99 * dd.std(axis=0, ddof=1) / np.sqrt(len(dd))
        print(f"| {(labels or {}).get(k, k)} | {a[:, 0].mean():.4f} ({dd[:, 0].mean():+.4f} ± {h[0]:.4f}) | "
              f"{a[:, 1].mean():.3f} ({dd[:, 1].mean():+.3f} ± {h[1]:.3f}) | {a[:, 2].mean():.3f} "
              f"({int((1 - a[:, 2]).sum())}) | {a[:, 3].mean():.3f} ({dd[:, 3].mean():+.3f} ± {h[3]:.3f}) |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="+", help="NAME=JSON of DE-CAM options; the first is the reference")
    ap.add_argument("--set", default="composites", choices=("composites", "planted"))
    ap.add_argument("--split", default="tune", choices=("tune", "report"))
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--auc-step", type=int, default=4)
    ap.add_argument("--rise", type=int, default=None, metavar="BUDGET", help="add RISE at BUDGET (seed 0)")
    ap.add_argument("--save", type=Path, default=None, metavar="JSON",
                    help="also write every run's measures (case, seed, variant) and RISE's, for other pairings")
    args = ap.parse_args()
    confs = dict(v.split("=", 1) for v in args.variants)
    confs = {k: json.loads(v) for k, v in confs.items()}
    seeds = [int(s) for s in args.seeds.split(",")]
    d = evalset.load(args.set, args.split)
    clf = Classifier(d["model"])
    rows: dict[str, list] = {k: [] for k in confs}
    rise: list = []
    for i in range(len(d["targets"])):
        img, box, tg = d["images"][i].astype(np.float32), d["boxes"][i], int(d["targets"][i])
        x = clf.prepare(img)
        step = args.auc_step * x.shape[2]
        for seed in seeds:
            for k, c in confs.items():
                m = explain_image(clf, img, "decam", target=tg, budget=args.budget, seed=seed, **c).saliency
                rows[k].append(measure(clf, x, m, box, tg, step))
        if args.rise:
            rise.append(measure(clf, x, explain_image(clf, img, "rise", target=tg, budget=args.rise).saliency, box,
                                tg, step))
        print(d["names"][i], " ".join(f"{k}:{int(sum(v[2] for v in rows[k][-len(seeds):]))}" for k in rows),
              flush=True)
    print(f"\n{args.set} {args.split}, budget {args.budget}, seeds {seeds}, AUC step {args.auc_step} rows; "
          "paired difference to the first row (+- 1.99 s.e.)\n")
    print_paired(rows, {k: f"{k} {json.dumps(c)}" for k, c in confs.items()})
    if args.save:
        args.save.write_text(json.dumps({
            "set": args.set, "split": args.split, "budget": args.budget, "seeds": seeds, "auc_step": args.auc_step,
            "measures": ["deletion", "insertion", "pointing", "energy"], "cases": [str(n) for n in d["names"]],
            "variants": {k: {"options": confs[k], "runs": [list(map(float, r)) for r in v]} for k, v in rows.items()},
            "rise": {"budget": args.rise, "runs": [list(map(float, r)) for r in rise]} if rise else None}, indent=1))
    if rise:
        a = np.array(rise)
        print(f"| RISE at {args.rise} (seed 0) | {a[:, 0].mean():.4f} | {a[:, 1].mean():.3f} | {a[:, 2].mean():.3f} "
              f"({int((1 - a[:, 2]).sum())}) | {a[:, 3].mean():.3f} |")


if __name__ == "__main__":
    main()
