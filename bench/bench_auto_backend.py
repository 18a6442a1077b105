"""Is ``--backend auto`` as fast as the faster engine? (issue 23)

Runs ``blackbox-cam explain`` with RISE at 2000 queries on the bundled model, once per engine
per round (``auto``, ``onnxruntime``, ``openvino``, interleaved so load drifts hit all three
alike), each into a fresh ``--out`` so no cached map is timed, and prints the median wall time
per engine and ``auto`` / the faster engine, and the same for CPU-seconds (user + system of the
child process), which other work on a shared machine disturbs much less than wall time.

    python bench/bench_auto_backend.py [--rounds 3] [--image models/images/chelsea.png]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image", default=str(ROOT / "models" / "images" / "chelsea.png"))
    ap.add_argument("--budget", type=int, default=2000)
    a = ap.parse_args()
    engines = ("auto", "onnxruntime", "openvino")
    times: dict[str, list[float]] = {e: [] for e in engines}
    cpu: dict[str, list[float]] = {e: [] for e in engines}
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        for r in range(a.rounds):
            for e in engines:
                cmd = [sys.executable, "-m", "blackbox_cam.cli", "explain", str(ROOT / "models" / "efficientnet_lite0.onnx"),
                       a.image, "-m", "rise", "--budget", str(a.budget), "--seed", "0", "--backend", e,
                       "--out", str(Path(d) / f"{e}-{r}")]
                t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(cmd, check=True, capture_output=True)
                c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                times[e].append(time.perf_counter() - t0)
                cpu[e].append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
                print(f"round {r} {e}: {times[e][-1]:.1f} s wall, {cpu[e][-1]:.1f} CPU-s", flush=True)
    print(f"load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}; RISE {a.budget} queries, median of {a.rounds}:")
    for what, data in (("wall s", times), ("CPU-s", cpu)):
        med = {e: statistics.median(v) for e, v in data.items()}
        faster = min(("onnxruntime", "openvino"), key=med.get)
        print(f"  {what}: " + ", ".join(f"{e} {med[e]:.1f}" for e in engines)
              + f"; auto / faster engine ({faster}) {med['auto'] / med[faster]:.3f} (goal <= 1.05)")


if __name__ == "__main__":
    main()
