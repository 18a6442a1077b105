"""Make the small Ultralytics detector exports the detector tests read, and their references.

Every file is made by the real exporter (``YOLO(...).export(format="onnx")``) from a model
yaml of Ultralytics' own architectures shrunk to a tiny width (``scales: t``) with random
weights, so the files stay small (a few hundred kB) while the layout, the metadata and the
graph are exactly what Ultralytics writes for ``yolov8n.pt``. Only the classification biases
are raised (seeded) so that a random head reports a few dozen boxes above 0.25 instead of
none; the layout is what is tested, not accuracy. The 20 Pascal VOC names are set as the
model's ``names`` (a 20-class head keeps the files small), as a VOC-trained checkpoint has them.

For each export the references are Ultralytics' own code on the same ONNX file, stored as
``.npz`` so the tests need neither torch nor Ultralytics:

* ``raw``: the model's own output on Ultralytics' own letterboxed input (``LetterBox(auto=False)``,
  as its predictor does for a fixed-shape ONNX file), and that input (uint8 HWC RGB);
* ``boxes``, ``scores``, ``classes``: ``YOLO(onnx).predict(image, conf=0.25, iou=0.45)`` in the
  image's pixels (its predictor: letterbox, ``non_max_suppression``, ``scale_boxes``).

Needs (dev only, never at run time): torch, ``ultralytics`` (installed ``--no-deps``), and a
torchvision stand-in that provides ``torchvision.ops.nms`` (greedy NMS written in torch) plus a
``torchvision`` dist-info so Ultralytics' version checks pass; run as
``PYTHONPATH=.:<stub dir> YOLO_OFFLINE=1 python models/detectors/make_ultralytics.py``.
Running it again makes the same files (seeded) except for the date in the metadata.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent / "images"
REF_IMAGES = ("astronaut.png", "rocket.jpg")
IMGSZ = 320

#: name -> (Ultralytics yaml, export keyword arguments)
EXPORTS = {
    "yolov8t": ("v8/yolov8.yaml", dict(opset=17)),
    "yolov8t_nms": ("v8/yolov8.yaml", dict(opset=17, nms=True)),
    "yolo11t": ("11/yolo11.yaml", dict(opset=17)),
    "yolo26t": ("26/yolo26.yaml", dict(opset=17, nms=False)),  # end2end (nms=False): one-to-one head, [1, 300, 6]
}


def tiny_yaml(src: Path, dst: Path) -> None:
    import yaml

    cfg = yaml.safe_load(src.read_text())
    cfg["scales"] = {"t": [0.33, 0.0625, 256]}  # depth, width, max channels: ~1/4 of 'n'
    cfg["nc"] = 20  # Pascal VOC's classes: a smaller head than COCO's 80
    dst.write_text(yaml.safe_dump(cfg, sort_keys=False))


def exportable_nms():
    """``torchvision.ops.nms`` as real torchvision exports it: an ONNX ``NonMaxSuppression`` node
    (torchvision's ``_register_onnx_ops.symbolic_multi_label_nms``), computed meanwhile by the
    installed ``nms``. Needed only where the stand-in's greedy loop (not exportable) is installed;
    with a real torchvision this changes nothing in the file."""
    import torch
    import torchvision.ops as ops

    plain = ops.nms

    class NMS(torch.autograd.Function):
        @staticmethod
        def forward(ctx, boxes, scores, iou):
            return plain(boxes, scores, iou)

        @staticmethod
        def symbolic(g, boxes, scores, iou):
            b = g.op("Unsqueeze", boxes, g.op("Constant", value_t=torch.tensor([0])))
            s = g.op("Unsqueeze", scores, g.op("Constant", value_t=torch.tensor([0, 1])))
            most = g.op("Constant", value_t=torch.tensor([sys.maxsize], dtype=torch.long))
            thr = g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float))
            out = g.op("NonMaxSuppression", b, s, most, thr)
            return g.op("Gather", out, g.op("Constant", value_t=torch.tensor(2)), axis_i=1)

    ops.nms = lambda boxes, scores, iou: NMS.apply(boxes, scores, float(iou))
    return plain


def make(name: str, src: str, kw: dict) -> None:
    import torch
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.utils import YAML
    from ultralytics.data.augment import LetterBox

    root = Path(ultralytics.__file__).parent
    cfg = HERE / f"{name}.yaml"
    tiny_yaml(root / "cfg" / "models" / src, cfg)
    torch.manual_seed(0)
    model = YOLO(str(cfg))
    cfg.unlink()
    model.model.names = YAML.load(root / "cfg" / "datasets" / "VOC.yaml")["names"]
    head = model.model.model[-1]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        one2one = list(getattr(head, "one2one_cv3", None) or [])
        for seq in list(head.cv3) + one2one:
            conv = seq[-1]
            shift = 4.5 if seq in one2one else 3.0  # the one-to-one head reports top-300 without NMS: fewer above 0.25
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 1.5 - shift)
            conv.weight.mul_(8.0)
    if kw.get("nms"):
        plain = exportable_nms()
    try:
        out = model.export(format="onnx", imgsz=IMGSZ, simplify=False, **kw)
    finally:
        if kw.get("nms"):
            import torchvision.ops

            torchvision.ops.nms = plain
    onnx_path = HERE / f"{name}.onnx"
    Path(out).replace(onnx_path)
    ref = YOLO(str(onnx_path), task="detect")
    import cv2
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    arrays = {}
    for i, im in enumerate(REF_IMAGES):
        bgr = cv2.imread(str(IMAGES / im))
        lb = LetterBox((IMGSZ, IMGSZ), auto=False, stride=32)(image=bgr)
        rgb = lb[..., ::-1]
        feed = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], np.float32) / 255.0
        raw = sess.run(None, {sess.get_inputs()[0].name: feed})
        r = ref.predict(str(IMAGES / im), imgsz=IMGSZ, conf=0.25, iou=0.45, verbose=False)[0]
        arrays[f"{i}_input"] = np.ascontiguousarray(rgb)
        for j, o in enumerate(raw):
            arrays[f"{i}_raw{j}"] = o
        arrays[f"{i}_boxes"] = r.boxes.xyxy.numpy().astype(np.float32)
        arrays[f"{i}_scores"] = r.boxes.conf.numpy().astype(np.float32)
        arrays[f"{i}_classes"] = r.boxes.cls.numpy().astype(np.int64)
        print(name, im, "detections", len(r.boxes), file=sys.stderr)
    np.savez_compressed(HERE / f"{name}_ultralytics.npz", images=np.array(REF_IMAGES), **arrays)


if __name__ == "__main__":
    for name in sys.argv[1:] or EXPORTS:
        make(name, *EXPORTS[name])
