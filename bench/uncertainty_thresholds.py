"""Queries ``--budget auto`` would use at each stability threshold, read from the per-round
stability histories that a high-threshold run of ``bench/evaluate.py --auto T`` left in its map cache
(every lower threshold's stop point is in them). Not a test. Issue 21; docs/uncertainty.md.

    PYTHONPATH=. python bench/uncertainty_thresholds.py bench/results/cache 0.97
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(cache: Path, high: float, budget: int = 2000) -> None:
    for method in ("decam", "rise"):
        hist = []
        for f in sorted(cache.glob(f"*/*/{method}_auto@{budget}-*.npz")):
            with np.load(f) as d:
                if "uncertainty" in d.files:
                    h = json.loads(str(d["uncertainty"]))["auto"]
                    if h["stability"] == high:
                        hist.append(h)
        for t in (0.8, 0.85, 0.9, 0.92, 0.95, high):
            q = [next((qq for qq, r in h["rounds"] if r >= t), h["max_budget"]) for h in hist]
            print(f"{method} threshold {t}: {len(q)} images, mean queries "
                  f"{float(np.mean(q)):.0f} of {budget}" if q else f"{method}: no histories")


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]))
