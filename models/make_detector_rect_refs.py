"""Ultralytics' predictor with its default ``rect=True`` on the zoo's dynamic exports (dev-only;
``tests/test_detector_polish.py`` reads only the ``.npz`` files it writes, no torch).

On a dynamic ONNX export (``dynamic=True``), Ultralytics' predictor letterboxes each image only
to the next multiple of the stride (``LetterBox(auto=True)``: the image scaled to fit ``imgsz``,
each side then padded by ``(imgsz - side) % 32``, centred, grey 114), so every image has its own
input size. blackbox-cam reproduces it with the sidecar key ``"letterbox_auto": true``.

Writes ``tests/data/detector_zoo/<name>_rect.npz`` for ``yolov8_dyn`` and ``yolo11_dyn`` with, per
image of the zoo, ``<image>/boxes`` (x0, y0, x1, y1 in the image's pixels), ``<image>/scores``,
``<image>/classes`` and ``<image>/input_hw`` (the input's height and width the predictor fed),
from ``YOLO(file, task="detect").predict(path, conf=0.25, iou=0.45, max_det=300, imgsz=...)``,
i.e. its default ``rect=True``.

Run (torch CPU and ``ultralytics==8.4.190`` installed with ``--no-deps``; Ultralytics imports
``torchvision``, for which a stand-in package providing ``torchvision.ops.nms`` as a greedy NMS
written in torch is enough, put first on ``PYTHONPATH``; no network: ``YOLO_OFFLINE=1``)::

    PYTHONPATH=$PWD:<torchvision stand-in> YOLO_OFFLINE=1 python models/make_detector_rect_refs.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "data" / "detector_zoo"
ZOO = ROOT / "models" / "detectors" / "zoo"
CONF, IOU, MAX_DET = 0.25, 0.45, 300
NAMES = ("yolov8_dyn", "yolo11_dyn")


def main() -> None:
    from ultralytics import YOLO

    manifest = json.loads((REF / "zoo.json").read_text())
    for name in NAMES:
        entry = manifest["models"][name]
        model = YOLO(str(ZOO / entry["file"]), task="detect")
        out: dict[str, np.ndarray] = {}
        for image in manifest["images"]:
            key = Path(image).name
            r = model.predict(str(ROOT / image), conf=CONF, iou=IOU, max_det=MAX_DET, imgsz=entry["input_hw"],
                              verbose=False)[0]
            fed = model.predictor.batch  # the last batch: (paths, images, info); its input tensor size below
            out[f"{key}/boxes"] = r.boxes.xyxy.numpy().astype(np.float32).reshape(-1, 4)
            out[f"{key}/scores"] = r.boxes.conf.numpy().astype(np.float32).reshape(-1)
            out[f"{key}/classes"] = r.boxes.cls.numpy().astype(np.int64).reshape(-1)
            out[f"{key}/input_hw"] = np.array(_input_hw(model, fed), np.int64)
            print(name, key, len(out[f"{key}/scores"]), out[f"{key}/input_hw"].tolist())
        np.savez_compressed(REF / f"{name}_rect.npz", **out)


def _input_hw(model, batch) -> tuple[int, int]:
    """The (H, W) the predictor fed: its own pre-processing of the last image, run again."""
    im = model.predictor.preprocess(batch[1])
    return int(im.shape[2]), int(im.shape[3])


if __name__ == "__main__":
    sys.exit(main())
