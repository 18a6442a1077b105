"""Peak memory of ``blackbox-cam explain`` on very large images (not a test).

Each case runs the real CLI in a fresh subprocess and reads that child's peak resident set
size from the kernel (``getrusage(RUSAGE_CHILDREN).ru_maxrss``, what ``/usr/bin/time -v``
reports as "Maximum resident set size"); one child per case, so the peaks do not mix. The
reference, measured in the same run, is the same command on the bundled 451 x 300 photo; the
table prints each case's peak and its ratio to that reference.

Cases (goal: the 8000 x 8000 PNG within 1.5 GiB):

* ``8000x8000 PNG``: a photo-like PNG (the bundled cat photo scaled up, with sensor-like
  noise so it compresses like a photo, ~100 MB on disk), written to a temporary folder;
* ``8000x8000 JPEG``: the same picture as a JPEG (decoded at reduced scale by ``draft``);
* ``--batch-size 100000 --budget 300``: the absurd batch size that used to allocate 56 GiB.

    python bench/bench_memory.py [--method rise] [--budget 300] [--side 8000]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
PHOTO = ROOT / "models" / "images" / "chelsea.png"
GOAL_MIB = 1.5 * 1024


def photo_like(side: int, folder: Path) -> tuple[Path, Path]:
    """The bundled photo at ``side`` x ``side`` plus mild noise, as PNG and JPEG."""
    base = Image.open(PHOTO).convert("RGB").resize((side, side), Image.BICUBIC)
    rng = np.random.default_rng(0)
    arr = np.asarray(base, np.uint8)
    band = 500
    out = np.empty_like(arr)
    for y in range(0, side, band):  # noise in bands: no full-size float copy here either
        noisy = arr[y:y + band].astype(np.int16) + rng.integers(-6, 7, arr[y:y + band].shape, dtype=np.int16)
        out[y:y + band] = np.clip(noisy, 0, 255).astype(np.uint8)
    img = Image.fromarray(out)
    png, jpg = folder / f"photo_{side}.png", folder / f"photo_{side}.jpg"
    img.save(png, compress_level=6)
    img.save(jpg, quality=92)
    return png, jpg


def peak_of(args: list[str]) -> tuple[float, float, int]:
    """(peak RSS MiB, seconds, exit code) of ``blackbox-cam explain ARGS`` in a fresh child."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    # a wrapper child that runs the CLI and reports its own peak: RUSAGE_CHILDREN keeps the
    # maximum over all children ever waited for, so each case gets its own wrapper
    code = ("import resource, subprocess, sys; "
            "rc = subprocess.call([sys.executable, '-m', 'blackbox_cam.cli'] + sys.argv[1:], "
            "stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, "explain", *args], env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t
    try:
        kib = int(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        sys.stderr.write(p.stderr)
        raise SystemExit(f"explain failed: {' '.join(args)}")
    return kib / 1024.0, secs, p.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="rise")
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--side", type=int, default=8000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        png, jpg = photo_like(a.side, folder)
        print(f"made {png.name} ({png.stat().st_size / 1e6:.0f} MB) and {jpg.name} "
              f"({jpg.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s")
        common = ["-m", a.method, "--budget", str(a.budget), "--device", "cpu"]
        cases = [("reference: 451x300 PNG", [str(MODEL), str(PHOTO), *common]),
                 (f"{a.side}x{a.side} PNG", [str(MODEL), str(png), *common]),
                 (f"{a.side}x{a.side} JPEG", [str(MODEL), str(jpg), *common]),
                 ("--batch-size 100000, 451x300", [str(MODEL), str(PHOTO), *common, "--batch-size", "100000"])]
        print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
              f"explain -m {a.method} --budget {a.budget}, one fresh process per case\n")
        print("| case | peak RSS (MiB) | ratio to reference | seconds | exit |")
        print("|---|---|---|---|---|")
        ref = None
        for name, args in cases:
            mib, secs, rc = peak_of([*args, "--out", str(folder / name.split(":")[0].replace(" ", "_"))])
            ref = ref or mib
            print(f"| {name} | {mib:.0f} | {mib / ref:.2f} | {secs:.1f} | {rc} |")
        print(f"\ngoal: {a.side}x{a.side} PNG <= {GOAL_MIB:.0f} MiB")


if __name__ == "__main__":
    main()
