"""Grad-CAM and EigenCAM per detection in units of forward passes measured in the same run (not a test).

    python bench/bench_detection_gradcam.py [--model tests/data/detection_gradcam/yolov8_tiny.onnx] [--repeat 3]

Prints, for one 320 x 320 image of the tiny YOLOv8 (tests/data/detection_gradcam):
  forward        one ``Detector.candidates`` call (ONNX Runtime forward + decoding)
  gradcam P3/P5  one detection's Grad-CAM map through the registry's hook (its candidate's level,
                 gradient graph built once per layer and cached: the build is reported apart)
  eigencam P3    one detection's EigenCAM map (forward to the neck map + SVD), and with --in-box
  5 detections   five detections of one image (mixed levels), one map each
Times are medians (``bench_gradcam.timed``). On shared cores the ratios move with the load.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_gradcam import timed  # noqa: E402


def main() -> None:
    from blackbox_cam.methods import METHODS, gradcam
    from blackbox_cam.methods._detgrad import CandidateTarget
    from blackbox_cam.model.open import open_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "tests" / "data" / "detection_gradcam" / "yolov8_tiny.onnx"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    det = open_model(args.model)
    x = np.load(Path(args.model).with_suffix(".npz"))["pixels"][:1].astype(np.float32) / 255
    found = det.detect(x)[0]
    levels = gradcam.detector_levels(det)

    cand = det.candidates(x)

    def target(level):  # the level's most probable candidate (reported or not)
        part = cand.probs[0, level.first:level.last + 1]
        a, c = np.unravel_index(np.argmax(part), part.shape)
        return CandidateTarget(level.first + int(a), int(c), tuple(cand.boxes[0, level.first + int(a)]))

    p3, p5 = target(levels[0]), target(levels[-1])
    five = [CandidateTarget(int(c), int(k), tuple(b)) for c, k, b in
            zip(found.candidate[:5], found.classes[:5], found.boxes[:5])]

    def hook(method, t, **kw):
        return lambda: METHODS[method].hook(det, x[0], t, budget=None, seed=0, score=0.0, layer="auto", **kw)

    t0 = time.perf_counter()
    for lv in levels:
        gradcam.detection_cams(det, x, [target(lv)])
    build = time.perf_counter() - t0
    hook("eigencam", p3)()
    fns = {"forward": lambda: det.candidates(x),
           "gradcam P3": hook("gradcam", p3), "gradcam P5": hook("gradcam", p5),
           "gradcam++ P3": hook("gradcam++", p3),
           "eigencam P3": hook("eigencam", p3), "eigencam P3 --in-box": hook("eigencam", p3, in_box=True),
           "5 detections (gradcam)": lambda: [hook("gradcam", t)() for t in five]}
    times = timed(fns, args.repeat)
    base = times["forward"]
    print(f"model {args.model}: {det}; {len(found)} detections on the image; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"one-off: gradient graphs for the {len(levels)} neck maps built in {build:.2f} s")
    for k, v in times.items():
        print(f"{k:24s} {v * 1e3:8.1f} ms  {v / base:6.1f} x forward")


if __name__ == "__main__":
    main()
