"""Throughput and memory of ``blackbox-cam global`` (not a test).

Throughput: images per second of the whole job (maps + aggregation + PEPPR + files) for
``-m gradcam`` and ``-m decam --budget B``, in-process and with ``--ray`` (a local Ray runtime,
one worker per CPU), each from an empty output folder (nothing cached). The reference measured
in the same run is the in-process run of the same method: the table prints the Ray speed-up
against it. Ray's start-up (runtime + workers loading the model) is timed separately and is not
in images/s. A second in-process run over the same folder shows the resumed cost (everything
from the cache).

Memory: the streamed aggregation keeps ``O(labels x H x W)`` whatever the number of images. Each
case runs the real CLI in a fresh subprocess on N generated 64x64 documents (``-m gradcam
--no-peppr``) and reads that child's peak resident set size from the kernel
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``); N = 1,000 is the reference for N = 10,000.

    python bench/bench_global.py [--budget 200] [--memory-n 10000] [--no-ray] [--no-memory]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "stamped" / "stamped.onnx"
DEMO = ROOT / "models" / "stamped" / "demo_labels.csv"


def run_job(method: str, budget: int | None, out: Path, ray: bool, workers: int | None) -> dict:
    from blackbox_cam import Classifier
    from blackbox_cam.jobs.executors import LocalExecutor, RayExecutor
    from blackbox_cam.jobs.global_.job import run_global

    clf = Classifier(MODEL, device="cpu")
    t0 = time.perf_counter()
    ex = RayExecutor(clf, {"device": "cpu"}, workers=workers) if ray else LocalExecutor(clf)
    startup = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        res = run_global(clf, [DEMO], out, method=method, budget=budget, executor=ex)
        secs = time.perf_counter() - t0
    finally:
        ex.close()
    n = len(res.images)
    return {"n": n, "seconds": secs, "ips": n / secs, "startup": startup, "computed": res.computed,
            "workers": ex.workers}


def memory_case(n: int, folder: Path) -> float:
    """Peak RSS (MiB) of one ``blackbox-cam global`` child on ``n`` generated documents."""
    data = folder / f"docs_{n}"
    if not data.exists():
        sys.path.insert(0, str(ROOT / "models"))
        from PIL import Image
        from stamped_data import make_sample
        import numpy as np
        rng = np.random.default_rng(123)
        data.mkdir()
        for i in range(n):
            img, _ = make_sample(rng, i % 4)
            Image.fromarray(img).save(data / f"d{i:05d}.png", compress_level=1)
    out = folder / f"out_{n}"
    cmd = [sys.executable, "-c", "import resource, sys; from blackbox_cam.cli import main\n"
           "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
           "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n",
           "global", str(MODEL), str(data), "-m", "gradcam", "--no-peppr", "--quiet", "--device", "cpu",
           "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("maxrss")]
    if p.returncode not in (0, 1) or not line:
        raise SystemExit(f"memory case {n} failed:\n{p.stdout}\n{p.stderr[-2000:]}")
    return int(line[-1].split()[1]) / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=200, help="DE-CAM budget per image")
    ap.add_argument("--workers", type=int, default=None, help="Ray workers (default: the CPUs)")
    ap.add_argument("--memory-n", type=int, default=10_000)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (a loaded machine slows every row alike)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-global-"))
    try:
        rows = []
        for method, budget in (("gradcam", None), ("decam", args.budget)):
            ref = run_job(method, budget, tmp / f"{method}-serial", False, None)
            again = run_job(method, budget, tmp / f"{method}-serial", False, None)
            rows.append((method, budget, "in-process", ref, 1.0))
            rows.append((method, budget, "in-process, resumed (all cached)", again, again["ips"] / ref["ips"]))
            if not args.no_ray:
                r = run_job(method, budget, tmp / f"{method}-ray", True, args.workers)
                rows.append((method, budget, f"--ray ({r['workers']} workers)", r, r["ips"] / ref["ips"]))
        print("\n| method | budget | run | images | images/s | vs in-process | start-up s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for method, budget, how, r, ratio in rows:
            print(f"| {method} | {budget or '-'} | {how} | {r['n']} | {r['ips']:.2f} | {ratio:.2f}x | "
                  f"{r['startup']:.1f} |")
        if not args.no_memory:
            small = memory_case(1000, tmp)
            big = memory_case(args.memory_n, tmp)
            print("\n| images | peak RSS MiB | vs 1,000 |")
            print("| --- | --- | --- |")
            print(f"| 1,000 | {small:.0f} | 1.00x |")
            print(f"| {args.memory_n:,} | {big:.0f} | {big / small:.2f}x |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
