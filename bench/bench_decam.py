"""DE-CAM throughput and memory on the bundled model (not a test).

For each budget, runs DE-CAM on the bundled images and reports, measured in the same run:

* queries/second of DE-CAM, and the ratio to the backend's raw throughput (the same model,
  the same batch size, a pre-built batch fed straight to ``session.run``; ``--backend``
  chooses the engine as on the CLI, default auto);
* the share of wall time spent outside the model (mask composition, DE bookkeeping,
  aggregation), goal <= 5 %;
* peak resident memory of the process (goal <= 1 GiB at budgets up to 10,000).

    python bench/bench_decam.py [--budgets 500,2000,10000] [--images ...] [--backend auto|onnxruntime|openvino]
                                [--options '{"refine": 0.5, "resolution": 32}'] [--compare-pipeline] [--startup]

``--compare-pipeline`` runs every image twice per budget, interleaved, with the composition of
the next batch overlapped with the model call (:class:`~blackbox_cam.methods.decam.PairScorer`;
the default only when the model runs off the CPU) and without (the default on a CPU), each against
raw throughput measured right before it, so the two are compared under the same load; without it
the rows say ``default``. ``--startup`` first measures, in fresh processes, the import of
the package, the model's compilation, and the first image against the second: with Numba's
on-disk cache warm (the usual case) and with an empty cache directory (first run after install).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

T_START = time.perf_counter()
from blackbox_cam import Classifier, explain_image, load_image  # noqa: E402
from blackbox_cam.methods.decam import PairScorer  # noqa: E402
T_IMPORTED = time.perf_counter()


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


STARTUP = """
import time, sys
t0 = time.perf_counter()
from blackbox_cam import Classifier, explain_image, load_image
t1 = time.perf_counter()
clf = Classifier(sys.argv[1], device="auto", backend=sys.argv[2])
t2 = time.perf_counter()
img = load_image(sys.argv[3])
times = []
for seed in (0, 1):
    t = time.perf_counter()
    explain_image(clf, img, "decam", budget=int(sys.argv[4]), seed=seed)
    times.append(time.perf_counter() - t)
print(t1 - t0, t2 - t1, times[0], times[1])
"""


def startup(model: str, backend: str, image: str, budget: int) -> None:
    """Fresh processes: import, model compilation, first and second image (warm and cold Numba cache)."""
    print(f"| Numba cache | import s | model compile s | first image s | second image s | first - second |")
    print("|---|---|---|---|---|---|")
    for kind in ("warm (on disk)", "cold (empty dir)"):
        env = dict(os.environ)
        with tempfile.TemporaryDirectory() as tmp:
            if kind.startswith("cold"):
                env["NUMBA_CACHE_DIR"] = tmp
            out = subprocess.run([sys.executable, "-c", STARTUP, model, backend, image, str(budget)], env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
        imp, comp, first, second = map(float, out[-4:])
        print(f"| {kind} | {imp:.2f} | {comp:.2f} | {first:.2f} | {second:.2f} | {first - second:+.2f} |",
              flush=True)


def run_budget(clf, timed, images, budget, options, pipeline: bool | None) -> tuple[float, float, float, float]:
    """(queries, wall seconds, seconds inside the model, raw img/s measured before) over the images."""
    PairScorer.PIPELINE = pipeline
    q = wall = inside = 0.0
    raw = raw_throughput(clf, 300)
    for path in images:
        img = load_image(path)
        timed.seconds = 0.0
        t = time.perf_counter()
        res = explain_image(clf, img, "decam", budget=budget, seed=0, **options)
        wall += time.perf_counter() - t
        inside += timed.seconds
        q += res.explanation.queries
    return q, wall, inside, raw


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/efficientnet_lite0.onnx")
    ap.add_argument("--images", nargs="*", default=sorted(glob.glob("models/images/*.png") + glob.glob("models/images/*.jpg")))
    ap.add_argument("--budgets", default="500,2000,10000")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--options", default="{}", help="DE-CAM options as JSON, e.g. '{\"refine\": 0.5}'")
    ap.add_argument("--compare-pipeline", action="store_true",
                    help="also run without overlapping composition and model calls, interleaved")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved repetitions per budget")
    ap.add_argument("--startup", action="store_true", help="first measure start-up and the first image")
    args = ap.parse_args()
    options = json.loads(args.options)
    print(f"load average at start {os.getloadavg()[0]:.2f} (2-core machine shared: compare rows of one run only)")
    if args.startup:
        startup(args.model, args.backend, args.images[0], int(args.budgets.split(",")[0]))
    t = time.perf_counter()
    clf = Classifier(args.model, device="auto", backend=args.backend)
    print(f"this process: package imported in {T_IMPORTED - T_START:.2f} s, model compiled in "
          f"{time.perf_counter() - t:.2f} s")
    timed = TimedSession(clf.session)
    clf.session = timed
    print(f"machine: {platform.processor() or platform.machine()}, {clf.session.describe()}, batch {clf.batch_size}"
          + (f", DE-CAM options {options}" if options else ""))
    explain_image(clf, load_image(args.images[0]), "decam", budget=50)  # compile kernels, warm caches
    modes = [True, False] if args.compare_pipeline else [None]  # None: the default (on only off the CPU)
    print("| budget | pipeline | images | DE-CAM q/s | raw img/s (before) | ratio | time outside model | load avg | "
          "peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for budget in map(int, args.budgets.split(",")):
        for rep in range(args.repeats):
            for mode in (modes if rep % 2 == 0 else modes[::-1]):
                q, wall, inside, raw = run_budget(clf, timed, args.images, budget, options, mode)
                raw = 0.5 * (raw + raw_throughput(clf, 300))  # before and after: load drifts on shared machines
                qps = q / wall
                print(f"| {budget} | { {True: 'on', False: 'off', None: 'default'}[mode] } | {len(args.images)} | {qps:.1f} | {raw:.1f} | "
                      f"{qps / raw:.2f} | {100 * (wall - inside) / wall:.1f}% | {os.getloadavg()[0]:.1f} | "
                      f"{peak_rss_mib():.0f} |", flush=True)
    PairScorer.PIPELINE = None


if __name__ == "__main__":
    main()
