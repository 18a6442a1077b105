"""What a ``preprocess_fn`` costs: DE-CAM at 2000 queries on the bundled EfficientNet-Lite0,
through its declarative sidecar and through the same pipeline written as a function
(``models/efficientnet_lite0_fn.py``), on an image at the model's input size (224 x 224: the
function only normalises, < 1 ms) and on ``chelsea.png`` (451 x 300: the function also resizes).

With a function the black-box methods mask the *image* (its own pixels) and run the function on
every masked image, so a query costs the function's time plus composing the mask at the image's
size. Runs alternate (sidecar, function, sidecar, function, ...) so a shared machine's load hits
both alike; the ratio of medians is reported with the load average before and after. Also the
function's own cost per query (``Classifier.to_feed`` on a batch of 32, against the sidecar's).
Writes ``bench/results/vendor_fn_cost.json``. Usage: ``python bench/bench_vendor_fn.py [--repeats 3]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from blackbox_cam.explainer.pipeline import explain_image
from blackbox_cam.io.images import load_image
from blackbox_cam.model.runtime import Classifier

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/efficientnet_lite0.onnx"
FN = f"{ROOT / 'models/efficientnet_lite0_fn.py'}:preprocess"


def per_query_ms(clf: Classifier, image: np.ndarray, n: int = 32) -> float:
    x = np.repeat(clf.prepare(image)[None], n, axis=0)
    t = time.perf_counter()
    for _ in range(3):
        clf.to_feed(x)
    return (time.perf_counter() - t) / (3 * n) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=int, default=2000)
    a = ap.parse_args()
    side, fn = Classifier(MODEL), Classifier(MODEL, preprocess_fn=FN)
    chelsea = load_image(ROOT / "models/images/chelsea.png")
    images = {"224x224 (function normalises only)": chelsea[:224, 100:324], "451x300 (function resizes too)": chelsea}
    out = {"load_before": os.getloadavg(), "budget": a.budget, "cases": {}}
    for name, im in images.items():
        times: dict[str, list[float]] = {"sidecar": [], "function": []}
        cpu: dict[str, list[float]] = {"sidecar": [], "function": []}
        for _ in range(a.repeats):
            for kind, clf in (("sidecar", side), ("function", fn)):
                t, c = time.perf_counter(), time.process_time()
                explain_image(clf, im, "decam", budget=a.budget, seed=0)
                times[kind].append(time.perf_counter() - t)
                cpu[kind].append(time.process_time() - c)
        case = {"sidecar_s": times["sidecar"], "function_s": times["function"],
                "sidecar_cpu_s": cpu["sidecar"], "function_cpu_s": cpu["function"],
                "ratio_of_medians": statistics.median(times["function"]) / statistics.median(times["sidecar"]),
                "cpu_ratio_of_medians": statistics.median(cpu["function"]) / statistics.median(cpu["sidecar"]),
                "feed_ms_per_query": {"sidecar": per_query_ms(side, im), "function": per_query_ms(fn, im)}}
        out["cases"][name] = case
        print(name, json.dumps(case), flush=True)
    out["load_after"] = os.getloadavg()
    out["cpus"] = os.cpu_count()
    (ROOT / "bench/results/vendor_fn_cost.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
