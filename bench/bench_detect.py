"""``detect``'s own overhead (decode + thresholds + NMS) against the model's own time (not a test).

    python bench/bench_detect.py [--model yolov8n_640.onnx] [--image models/images/rocket.jpg] [--repeat 5]

Without ``--model`` it exports a YOLOv8n-size model (Ultralytics' ``yolov8n.yaml``, 3.2 M
parameters, 640 x 640, random weights) into a temporary folder with Ultralytics' own exporter
(dev only: torch, ultralytics, and a torchvision or the stand-in described in
``models/detectors/make_ultralytics.py``; PYTHONPATH and YOLO_OFFLINE=1 as there).

Prints medians (``bench_gradcam.timed``) of, for one letterboxed image:
  model      the ONNX Runtime run of the detector's own session (``Detector._raw``)
  decode     raw outputs -> Candidates (``blackbox_cam.model.detections.decode``)
  nms        Candidates -> Detections (``Detector.select``: score, threshold, class-aware NMS)
and the overhead ``(decode + nms) / model`` (goal < 5 %), at thresholds where 30, 300, 3000 and
all 8400 candidates reach the NMS (a trained model at the default 0.25 sends tens to hundreds;
Ultralytics' validation setting 0.001 thousands): random weights say nothing about how many
boxes a real scene gives, so the NMS is timed over that range. On shared cores the ratios move
with the load: the load average is printed too.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

from bench_gradcam import timed  # noqa: E402


def export_yolov8n(folder: Path) -> Path:
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolov8n.yaml")
    head = model.model.model[-1]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a trained head reports a few dozen boxes above 0.25; random biases none
        for seq in head.cv3:
            seq[-1].bias.copy_(torch.randn(seq[-1].bias.shape, generator=g) * 1.5 - 3.0)
            seq[-1].weight.mul_(2.0)
    out = model.export(format="onnx", imgsz=640, opset=17, simplify=False)
    dst = folder / "yolov8n_640.onnx"
    Path(out).replace(dst)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--image", default=str(ROOT / "models" / "images" / "rocket.jpg"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from blackbox_cam import Detector
    from blackbox_cam.io.images import load_image
    from blackbox_cam.model.detections import decode

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else export_yolov8n(Path(tmp))
        det = Detector(path)
        x = det.prepare(load_image(args.image))[None]
        raw = det._raw(x)
        lay = det.signature.detector
        cand = decode(lay, raw, det.input_size, det.num_classes)
        print(f"model: {path.name}, {lay.kind}, input {det.input_size}, {cand.boxes.shape[1]} candidates, "
              f"{det.session.describe()}, batch {det.batch_size}; load average {os.getloadavg()[0]:.1f}")
        best = np.sort(cand.scores().max(-1).ravel())
        # thresholds at which 30, 300, 3000 and every candidate reach the NMS (a trained model at
        # 0.25 sends tens to hundreds; Ultralytics' validation at 0.001 sends thousands)
        confs = [float(best[-k - 1]) for k in (30, 300, 3000) if k < len(best)] + [float(best[0]) - 1e-6]
        for conf in sorted(set(confs), reverse=True):
            n = int((cand.scores().max(-1) > conf).sum())
            t = timed({"model": lambda: det._raw(x),
                       "decode": lambda: decode(lay, raw, det.input_size, det.num_classes),
                       "nms": lambda: det.select(cand, conf=conf)}, args.repeat)
            kept = len(det.select(cand, conf=conf)[0])
            print(f"{n:5d} boxes to NMS (conf {conf:.4g}): model {t['model'] * 1e3:7.2f} ms, decode {t['decode'] * 1e3:6.3f} ms, "
                  f"nms {t['nms'] * 1e3:6.3f} ms ({kept} kept): overhead "
                  f"{(t['decode'] + t['nms']) / t['model']:.1%}")


if __name__ == "__main__":
    main()
