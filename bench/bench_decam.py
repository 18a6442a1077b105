"""DE-CAM throughput and memory on the bundled model (not a test).

For each budget, runs DE-CAM on the bundled images and reports, measured in the same run:

* queries/second of DE-CAM, and the ratio to the backend's raw throughput (the same model,
  the same batch size, a pre-built batch fed straight to ``session.run``; ``--backend``
  chooses the engine as on the CLI, default auto);
* the share of wall time spent outside the model (mask composition, DE bookkeeping,
  aggregation), goal <= 5 %;
* peak resident memory of the process (goal <= 1 GiB at budgets up to 10,000).

    python bench/bench_decam.py [--budgets 500,2000,10000] [--images ...] [--backend auto|onnxruntime|openvino]
                                [--options '{"refine": 0.5, "resolution": 32}']
"""
from __future__ import annotations

import argparse
import glob
import json
import platform
import resource
import time

import numpy as np

from blackbox_cam import Classifier, explain_image, load_image


class TimedSession:
    """Wraps a backend session and adds up the time spent inside ``run``."""

    def __init__(self, session) -> None:
        self._s, self.seconds = session, 0.0

    def run(self, *a, **k):
        t = time.perf_counter()
        try:
            return self._s.run(*a, **k)
        finally:
            self.seconds += time.perf_counter() - t

    def __getattr__(self, name):
        return getattr(self._s, name)


def raw_throughput(clf: Classifier, n: int) -> float:
    """Images/second of ``session.run`` alone on a ready batch of ``clf.batch_size``."""
    feed = clf.to_feed(np.random.default_rng(0).normal(size=(clf.batch_size, clf.channels) + clf.input_size)
                       .astype(np.float32))
    clf.session.run(None, {clf.input_name: feed})  # warm-up
    done, t = 0, time.perf_counter()
    while done < n:
        clf.session.run([clf.output_name], {clf.input_name: feed})
        done += len(feed)
    return done / (time.perf_counter() - t)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/efficientnet_lite0.onnx")
    ap.add_argument("--images", nargs="*", default=sorted(glob.glob("models/images/*.png") + glob.glob("models/images/*.jpg")))
    ap.add_argument("--budgets", default="500,2000,10000")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--options", default="{}", help="DE-CAM options as JSON, e.g. '{\"refine\": 0.5}'")
    args = ap.parse_args()
    options = json.loads(args.options)
    clf = Classifier(args.model, device="auto", backend=args.backend)
    timed = TimedSession(clf.session)
    clf.session = timed
    print(f"machine: {platform.processor() or platform.machine()}, {clf.session.describe()}, batch {clf.batch_size}"
          + (f", DE-CAM options {options}" if options else ""))
    explain_image(clf, load_image(args.images[0]), "decam", budget=50)  # compile kernels, warm caches
    print(f"| budget | images | DE-CAM q/s | raw {clf.session.name} img/s | ratio | time outside model | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for budget in map(int, args.budgets.split(",")):
        q = wall = inside = 0.0
        raw_before = raw_throughput(clf, 500)
        for path in args.images:
            img = load_image(path)
            timed.seconds = 0.0
            t = time.perf_counter()
            res = explain_image(clf, img, "decam", budget=budget, seed=0, **options)
            wall += time.perf_counter() - t
            inside += timed.seconds
            q += res.explanation.queries
        raw = 0.5 * (raw_before + raw_throughput(clf, 500))  # before and after: load drifts on shared machines
        qps = q / wall
        print(f"| {budget} | {len(args.images)} | {qps:.1f} | {raw:.1f} | {qps / raw:.2f} | "
              f"{100 * (wall - inside) / wall:.1f}% | {peak_rss_mib():.0f} |", flush=True)


if __name__ == "__main__":
    main()
