"""Make the detector conformance zoo and its references (dev-only; tests/test_detector_zoo.py
reads only the files it writes, no torch).

What it makes
-------------
``models/detectors/zoo/``: small detectors exported by their own exporters, random weights
(seeded), each under 0.5 MB:

* **Ultralytics YOLOv8 and YOLO11** built from their model yaml (the stock backbone and head,
  a custom scale ``[depth 0.33/0.50, width 0.0625, max channels 256]``, ``nc: 5``, ``reg_max:
  4`` instead of 16 so the box branch is 16 channels, not 64), exported by
  ``YOLO(...).export(format="onnx")`` six ways: opset 13 and 17 (``op13``, ``op17``),
  ``dynamic=True`` (``dyn``), ``nms=True`` (``nms``: NMS inside, ``[B, 300, 6]``), the exporter's
  own CPU FP16 path ``quantize=16`` (``fp16``: onnxruntime's ``float16`` converter with float32
  inputs and outputs kept, as Ultralytics 8.4 does on CPU; ``half=True`` needs CUDA) and a
  ``uint8`` input (``uint8``: the ``op17`` file with ``Cast(float) -> Div(255)`` put in front of
  its graph by ``onnx``, the way vendors ship "raw pixels in" models). YOLOv8 is exported at
  320 x 320, YOLO11 at 256 x 320 (height x width: a non-square input);
* a **YOLOv5-style head** built in torch (three stride levels, three anchors a cell, YOLOv5's
  ``Detect`` decoding: ``xy = (2 sig - 0.5 + grid) stride``, ``wh = (2 sig)^2 anchor``) giving
  ``[B, A, 5+C]``, exported by ``torch.onnx.export`` (TorchScript) at opset 13 and 17 and as
  float16 in and out (``fp16io``, onnxruntime's converter with ``keep_io_types=False``);
* **Ultralytics RT-DETR** from a yaml (a small conv backbone, rtdetr-l's AIFI/RepC3 neck and
  ``RTDETRDecoder`` with 32 hidden channels and 30 queries), exported at opset 17 (its minimum is
  16): in Ultralytics 8.4 the export holds the decoder's top-k rows ``[B, 30, 6]`` (cx, cy, w, h
  normalised, score, class);
* a **DETR-style head** built in torch (conv backbone, learned queries, one transformer decoder
  layer, ``logits [B, Q, C+1]`` with the no-object slot last, ``pred_boxes`` = sigmoid
  normalised cx, cy, w, h), exported at opset 17.

Random weights give meaningless but deterministic boxes. So that each export reports a handful of
detections (1 to 50) above the default score 0.25 on the test images, the bias of the final
class convolution (YOLOv8/11: ``Detect.cv3[i][-1]``; YOLOv5: the objectness and class rows of
``m[i]``; DETR: ``class_embed``) is shifted by one constant, found from the candidates' logits on
the test images before export (printed).

``tests/data/detector_zoo/``: three non-square crops in ``images/`` (the other test images are
``models/images/*``), ``zoo.json`` (the manifest, with each image's path relative to the
repository) and per export ``<name>.npz`` with, per image,
``<image>/boxes`` (x0, y0, x1, y1 in the image's pixels), ``<image>/scores`` and
``<image>/classes``, made by that family's OWN code on the SAME ONNX file:

* Ultralytics files: Ultralytics' own predictor, ``YOLO(file, task="detect").predict(paths,
  conf=0.25, iou=0.45, max_det=300)`` (ONNX Runtime inside ``AutoBackend``; ``iou=0.45`` because
  blackbox-cam's default is the issue's 0.45, Ultralytics' own predict default is 0.7). On the
  ``dyn`` files with ``rect=False``: by default (``rect=True``) the predictor letterboxes each
  image of a dynamic export only to the next multiple of 32, not to the metadata's imgsz, and
  blackbox-cam's default is one input size per model (the counts with ``rect=True`` are in the
  manifest as ``detections_default_rect``; its sidecar key ``"letterbox_auto": true`` gives
  ``rect=True``, checked by ``make_detector_rect_refs.py``'s references). The
  ``uint8`` files cannot go through ``AutoBackend`` (it feeds float 0..1), so they run
  Ultralytics' pieces by hand: ``LetterBox`` on the ``cv2.imread`` image, BGR -> RGB, the ONNX
  session, ``ultralytics.utils.nms.non_max_suppression`` and ``ultralytics.utils.ops.scale_boxes``;
* YOLOv5-style: Ultralytics' ``LetterBox`` (the same code as YOLOv5's ``letterbox(auto=False)``),
  the ONNX session, YOLOv5's ``non_max_suppression`` written out below from
  ``utils/general.py`` of ultralytics/yolov5 v7.0 (``x[:, 5:] *= x[:, 4:5]``, best class, class
  offset 7680, ``torchvision.ops.nms``) and ``scale_boxes`` (Ultralytics 8.4's, which inverts
  the rounded padding exactly; YOLOv5's own keeps the unrounded half-padding, up to 0.5 px off);
* RT-DETR: Ultralytics' ``RTDETRPredictor`` (a squash to the input, ``LetterBox(scale_fill=True)``),
  its boxes clipped to the image (it leaves them unclipped; blackbox-cam clips every box);
* DETR-style: torchvision's ``Resize`` on the PIL image (= Pillow bilinear), ImageNet
  normalisation, the ONNX session and DETR's ``PostProcess`` (softmax, drop the no-object slot,
  max, cx, cy, w, h -> x0, y0, x1, y1 times the image's width and height), keeping scores above
  0.25.

Run (about a minute on two cores)::

    PYTHONPATH=$PWD:<stub> YOLO_OFFLINE=1 python models/make_detector_zoo.py

Needs torch 2.13 (CPU), ``ultralytics==8.4.190`` installed with ``--no-deps`` and a torchvision
stand-in on ``PYTHONPATH``: a ``torchvision`` package whose ``ops.nms``/``batched_nms`` are a
greedy NMS in torch and whose other modules are empty shells, with a ``torchvision-*.dist-info``
so that Ultralytics' version checks pass (pip's torchvision wheel pulls a CUDA torch). No network:
the models are built from yaml, never downloaded.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "models" / "detectors" / "zoo"
REF = ROOT / "tests" / "data" / "detector_zoo"
IMAGES = REF / "images"
CONF, IOU, MAX_DET = 0.25, 0.45, 300
NC = 5
DAMP = 0.3  # the final class convolution's weights are scaled by this (fewer images with none or 100)
TARGET = 14  # candidates above CONF per image (the 60th-percentile image) the bias shift aims at
ULTRA_EXPORTS = ("op13", "op17", "dyn", "nms", "fp16", "uint8")


# -- images -----------------------------------------------------------------------------------------
def make_images() -> list[Path]:
    """Three non-square crops (tall, wide, small) of models/images saved as PNG beside the references."""
    from PIL import Image
    IMAGES.mkdir(parents=True, exist_ok=True)
    src = ROOT / "models" / "images"
    crops = {"astronaut_tall.png": ("astronaut.png", (150, 0, 370, 430)),
             "chelsea_wide.png": ("chelsea.png", (0, 60, 451, 230)),
             "coffee_small.png": ("coffee.png", (120, 40, 290, 140))}
    for name, (f, box) in crops.items():
        Image.open(src / f).convert("RGB").crop(box).save(IMAGES / name, optimize=True)
    return zoo_images()


def zoo_images() -> list[Path]:
    """The four photos of models/images and the three crops, in a fixed order."""
    src = ROOT / "models" / "images"
    return [src / f for f in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")] + \
        sorted(IMAGES.glob("*.png"))


# -- Ultralytics ------------------------------------------------------------------------------------
V8_YAML = """nc: {nc}
reg_max: 4
scales:
  z: [0.33, 0.0625, 256]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 1, Conv, [128, 3, 2]]
  - [-1, 3, C2f, [128, True]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [-1, 6, C2f, [256, True]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [-1, 6, C2f, [512, True]]
  - [-1, 1, Conv, [1024, 3, 2]]
  - [-1, 3, C2f, [1024, True]]
  - [-1, 1, SPPF, [1024, 5]]
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]]
  - [-1, 3, C2f, [512]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]]
  - [-1, 3, C2f, [256]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 12], 1, Concat, [1]]
  - [-1, 3, C2f, [512]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [[-1, 9], 1, Concat, [1]]
  - [-1, 3, C2f, [1024]]
  - [[15, 18, 21], 1, Detect, [nc]]
"""
V11_YAML = """nc: {nc}
reg_max: 4
scales:
  z: [0.50, 0.0625, 256]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 1, Conv, [128, 3, 2]]
  - [-1, 2, C3k2, [256, False, 0.25]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [-1, 2, C3k2, [512, False, 0.25]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [-1, 2, C3k2, [512, True]]
  - [-1, 1, Conv, [1024, 3, 2]]
  - [-1, 2, C3k2, [1024, True]]
  - [-1, 1, SPPF, [1024, 5]]
  - [-1, 2, C2PSA, [1024]]
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]]
  - [-1, 2, C3k2, [512, False]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]]
  - [-1, 2, C3k2, [256, False]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 13], 1, Concat, [1]]
  - [-1, 2, C3k2, [512, False]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [[-1, 10], 1, Concat, [1]]
  - [-1, 2, C3k2, [1024, True]]
  - [[16, 19, 22], 1, Detect, [nc]]
"""
ULTRA = {"yolov8": (V8_YAML, (320, 320), 1), "yolo11": (V11_YAML, (256, 320), 2)}
#: RT-DETR: a small conv backbone (rtdetr-l's HGNet is too large to be tiny) and rtdetr-l's own
#: neck (AIFI, RepC3) and RTDETRDecoder: hidden 32, 30 queries, 2 points, 2 heads, 1 layer, FFN 64.
RTDETR_YAML = """nc: {nc}
scales:
  z: [0.33, 0.125, 256]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 1, Conv, [128, 3, 2]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [-1, 1, Conv, [256, 3, 2]]
head:
  - [-1, 1, Conv, [256, 1, 1, None, 1, 1, False]]
  - [-1, 1, AIFI, [64, 2]]
  - [-1, 1, Conv, [256, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [3, 1, Conv, [256, 1, 1, None, 1, 1, False]]
  - [[-2, -1], 1, Concat, [1]]
  - [-1, 1, RepC3, [256]]
  - [-1, 1, Conv, [256, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [2, 1, Conv, [256, 1, 1, None, 1, 1, False]]
  - [[-2, -1], 1, Concat, [1]]
  - [-1, 1, RepC3, [256]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 12], 1, Concat, [1]]
  - [-1, 1, RepC3, [256]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 7], 1, Concat, [1]]
  - [-1, 1, RepC3, [256]]
  - [[16, 19, 22], 1, RTDETRDecoder, [nc, 32, 30, 2, 2, 1, 64]]
"""


def _squashed(paths: list[Path], hw: tuple[int, int]):
    """RTDETRPredictor's ``LetterBox(scale_fill=True)``: ``cv2.resize`` to the input, RGB, 0..1."""
    import cv2
    import torch
    ims = [cv2.resize(cv2.imread(str(p)), (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].transpose(2, 0, 1)
           for p in paths]
    return torch.from_numpy(np.stack(ims).astype(np.float32) / 255)


def build_rtdetr(paths: list[Path], work: Path):
    import torch
    from ultralytics import RTDETR
    cfg = work / "rtdetr-zoo.yaml"
    cfg.write_text(RTDETR_YAML.format(nc=NC))
    torch.manual_seed(3)
    model = RTDETR(str(cfg))
    hw = (320, 320)
    batch = _squashed(paths, hw)
    calibrate_bn(model.model, batch)
    with torch.no_grad():
        y = model.model(batch)[0]                       # [N, 30, 6]: cx, cy, w, h, score, class
    p = y[..., 4].clamp(1e-7, 1 - 1e-7).numpy()
    global TARGET
    keep, TARGET = TARGET, 8
    shift = _shift_for(np.log(p / (1 - p)))             # one constant on every class: the ranking is kept
    TARGET = keep
    with torch.no_grad():
        for head in (model.model.model[-1].dec_score_head[-1], model.model.model[-1].enc_score_head):
            head.bias += shift
    print(f"rtdetr: class biases shifted by {shift:+.3f}")
    return model, hw


def reference_rtdetr(path: Path, paths: list[Path], hw) -> dict[str, np.ndarray]:
    """Ultralytics' RTDETRPredictor; its boxes are not clipped to the image (YOLO's are, in
    ``scale_boxes``): clipped here as blackbox-cam reports every box."""
    from ultralytics import RTDETR
    model = RTDETR(str(path))
    out = {}
    for p in paths:
        r = model.predict(str(p), conf=CONF, max_det=MAX_DET, imgsz=list(hw), verbose=False)[0]
        h, w = r.orig_shape
        b = r.boxes.xyxy.numpy().copy()
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
        _put(out, p, b, r.boxes.conf.numpy(), r.boxes.cls.numpy())
    return out


def _letterboxed(paths: list[Path], hw: tuple[int, int]):
    """Ultralytics' LetterBox on each cv2-read image, as a float 0..1 RGB NCHW torch batch."""
    import cv2
    import torch
    from ultralytics.data.augment import LetterBox
    lb = LetterBox(hw, auto=False, stride=32)
    ims = [lb(image=cv2.imread(str(p)))[:, :, ::-1].transpose(2, 0, 1) for p in paths]
    return torch.from_numpy(np.stack(ims).astype(np.float32) / 255)


def calibrate_bn(model, batch) -> None:
    """Set every BatchNorm's running statistics to the test batch's (one forward pass in train mode,
    cumulative averages). A freshly initialised deep net with BN at mean 0 / variance 1 passes
    almost nothing of its input to the head (its outputs vary by 1e-8 across images); with the
    statistics of real images each layer is normalised and the boxes depend on the picture."""
    import torch
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()


def _shift_for(logits: np.ndarray) -> float:
    """The constant that puts the TARGET-th highest candidate logit of the 60th-percentile image at
    logit(CONF): logits [N, A]."""
    kth = np.sort(logits, axis=1)[:, -TARGET]
    return float(np.log(CONF / (1 - CONF)) - np.quantile(kth, 0.6))


def build_ultralytics(family: str, paths: list[Path], work: Path):
    import torch
    from ultralytics import YOLO
    text, hw, seed = ULTRA[family]
    cfg = work / f"{family}-zoo.yaml"
    cfg.write_text(text.format(nc=NC))
    torch.manual_seed(seed)
    yolo = YOLO(str(cfg), task="detect")
    model = yolo.model
    batch = _letterboxed(paths, hw)
    calibrate_bn(model, batch)
    with torch.no_grad():                     # damp the class logits' swing between pictures
        for seq in model.model[-1].cv3:
            seq[-1].weight *= DAMP
    with torch.no_grad():
        y = model(batch)[0]            # [N, 4+C, A], sigmoid scores
    p = y[:, 4:].amax(1).clamp(1e-7, 1 - 1e-7).numpy()
    shift = _shift_for(np.log(p / (1 - p)))
    head = model.model[-1]
    with torch.no_grad():
        for seq in head.cv3:
            seq[-1].bias += shift
    print(f"{family}: class bias shifted by {shift:+.3f}")
    return yolo, hw


def export_ultralytics(family: str, yolo, hw, work: Path) -> dict[str, dict]:
    import onnx
    made = {}
    plans = {"op13": dict(opset=13), "op17": dict(opset=17), "dyn": dict(opset=17, dynamic=True),
             "nms": dict(opset=17, nms=True, conf=CONF, iou=IOU), "fp16": dict(opset=17, quantize=16)}
    for name, kw in plans.items():
        with onnx_exportable_nms():
            f = Path(yolo.export(format="onnx", imgsz=list(hw), simplify=False, **kw))
        dst = OUT / f"{family}_{name}.onnx"
        m = onnx.load(f)
        _stable_metadata(m)
        onnx.save(m, dst)
        made[name] = {"file": dst.name, "exporter": f"ultralytics {_ultra_version()} export({_kw(kw)})"}
    src = onnx.load(OUT / f"{family}_op17.onnx")
    onnx.save(uint8_input(src), OUT / f"{family}_uint8.onnx")
    made["uint8"] = {"file": f"{family}_uint8.onnx",
                     "exporter": "the op17 file with Cast(uint8 -> float) and Div(255) put in front (onnx)"}
    return made


class onnx_exportable_nms:
    """While exporting, ``torchvision.ops.nms`` traces to ONNX ``NonMaxSuppression``, as the real
    torchvision's registered symbolic (``torchvision/ops/_register_onnx_ops.py``) makes it do:
    boxes ``[1, K, 4]``, scores ``[1, 1, K]``, no per-class cap, the IoU threshold a constant, the
    kept indices the third column of ``selected_indices``. Eager calls run the stand-in's own
    greedy NMS (the stand-in alone has no ONNX symbolic, so ``nms=True`` could not export)."""

    def __enter__(self):
        import torch
        import torchvision.ops as ops
        eager = ops.nms

        class _NMS(torch.autograd.Function):
            @staticmethod
            def forward(ctx, boxes, scores, iou):
                return eager(boxes, scores, iou)

            @staticmethod
            def symbolic(g, boxes, scores, iou):
                b = g.op("Unsqueeze", boxes, g.op("Constant", value_t=torch.tensor([0])))
                s = g.op("Unsqueeze", scores, g.op("Constant", value_t=torch.tensor([0, 1])))
                cap = g.op("Constant", value_t=torch.tensor([sys.maxsize], dtype=torch.long))
                thr = g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float))
                sel = g.op("NonMaxSuppression", b, s, cap, thr)
                col = g.op("Gather", sel, g.op("Constant", value_t=torch.tensor([2])), axis_i=1)
                return g.op("Squeeze", col, g.op("Constant", value_t=torch.tensor([1])))

        self.ops, self.eager = ops, eager
        ops.nms = lambda boxes, scores, iou: _NMS.apply(boxes, scores, float(iou))
        return self

    def __exit__(self, *exc):
        self.ops.nms = self.eager
        return False


def _kw(kw: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kw.items())


def _ultra_version() -> str:
    import ultralytics
    return ultralytics.__version__


def _stable_metadata(m) -> None:
    """The export date is the one non-deterministic field: fixed so a re-run makes the same bytes."""
    for p in m.metadata_props:
        if p.key == "date":
            p.value = "2026-12-07T00:00:00+00:00"


def uint8_input(model):
    """The same graph reading ``uint8`` pixels 0..255: ``Cast`` to float and ``Div`` by 255 in front."""
    import onnx
    from onnx import TensorProto, helper
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inp = g.input[0]
    old = inp.name
    inner = old + "_float"
    for node in g.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = inner
    inp.type.tensor_type.elem_type = TensorProto.UINT8
    scale = helper.make_tensor("uint8_scale", TensorProto.FLOAT, [], [255.0])
    g.initializer.append(scale)
    front = [helper.make_node("Cast", [old], [old + "_cast"], to=TensorProto.FLOAT, name="uint8_cast"),
             helper.make_node("Div", [old + "_cast", "uint8_scale"], [inner], name="uint8_div")]
    nodes = front + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    return m


def reference_ultralytics(path: Path, export: str, paths: list[Path], hw) -> dict[str, np.ndarray]:
    out = {}
    if export == "uint8":
        return reference_ultralytics_uint8(path, paths, hw)
    from ultralytics import YOLO
    model = YOLO(str(path), task="detect")
    for p in paths:
        r = model.predict(str(p), conf=CONF, iou=IOU, max_det=MAX_DET, imgsz=list(hw), verbose=False,
                          rect=export != "dyn")[0]
        _put(out, p, r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy())
    return out


def rect_counts(path: Path, paths: list[Path], hw) -> list[int]:
    """Detections per image from Ultralytics' predictor with its default ``rect=True``: on a
    dynamic export each image is letterboxed only to the next multiple of 32 (``LetterBox(auto=True)``),
    so the model sees another input than the imgsz letterbox (recorded in the manifest)."""
    from ultralytics import YOLO
    model = YOLO(str(path), task="detect")
    return [len(model.predict(str(p), conf=CONF, iou=IOU, max_det=MAX_DET, imgsz=list(hw), verbose=False)[0].boxes)
            for p in paths]


def reference_ultralytics_uint8(path: Path, paths: list[Path], hw) -> dict[str, np.ndarray]:
    import cv2
    import onnxruntime as ort
    import torch
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = {}
    for p in paths:
        im0 = cv2.imread(str(p))
        im = LetterBox(hw, auto=False, stride=32)(image=im0)[:, :, ::-1].transpose(2, 0, 1)[None]
        y = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(im)})[0]
        det = non_max_suppression(torch.from_numpy(y), CONF, IOU, max_det=MAX_DET)[0]
        det[:, :4] = scale_boxes(hw, det[:, :4], im0.shape[:2])
        _put(out, p, det[:, :4].numpy(), det[:, 4].numpy(), det[:, 5].numpy())
    return out


def _put(out: dict, p: Path, boxes, scores, classes) -> None:
    out[f"{p.name}/boxes"] = np.asarray(boxes, np.float32).reshape(-1, 4)
    out[f"{p.name}/scores"] = np.asarray(scores, np.float32).reshape(-1)
    out[f"{p.name}/classes"] = np.asarray(classes).astype(np.int64).reshape(-1)


# -- YOLOv5-style head ------------------------------------------------------------------------------
V5_ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))


def _v5_module():
    import torch
    from torch import nn

    def block(ci, co):
        return nn.Sequential(nn.Conv2d(ci, co, 3, 2, 1), nn.BatchNorm2d(co), nn.SiLU())

    class Detect(nn.Module):
        """YOLOv5 v7.0 ``models/yolo.py`` ``Detect`` in its export form: ``[B, A, 5+C]``."""

        def __init__(self, nc, ch, strides):
            super().__init__()
            self.nc, self.no, self.na = nc, nc + 5, 3
            self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
            self.register_buffer("anchors", torch.tensor(V5_ANCHORS, dtype=torch.float32).view(3, 3, 2))
            self.strides = strides

        def forward(self, xs):
            z = []
            for i, x in enumerate(xs):
                x = self.m[i](x)
                bs, _, ny, nx = x.shape
                x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
                yv, xv = torch.meshgrid(torch.arange(ny, dtype=torch.float32), torch.arange(nx, dtype=torch.float32),
                                        indexing="ij")
                grid = torch.stack((xv, yv), 2).expand(1, self.na, ny, nx, 2) - 0.5
                anchor_grid = self.anchors[i].view(1, self.na, 1, 1, 2).expand(1, self.na, ny, nx, 2)
                xy, wh, conf = x.sigmoid().split((2, 2, self.nc + 1), 4)
                xy = (xy * 2 + grid) * self.strides[i]
                wh = (wh * 2) ** 2 * anchor_grid
                z.append(torch.cat((xy, wh, conf), 4).view(bs, self.na * nx * ny, self.no))
            return torch.cat(z, 1)

    class TinyV5(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.ModuleList([nn.Sequential(block(3, 8), block(8, 16), block(16, 16)),   # stride 8
                                    block(16, 24), block(24, 32)])                              # 16, 32
            self.detect = Detect(NC, (16, 24, 32), (8, 16, 32))

        def forward(self, x):
            p3 = self.b[0](x)
            p4 = self.b[1](p3)
            p5 = self.b[2](p4)
            return self.detect([p3, p4, p5])

    return TinyV5()


def build_v5(paths: list[Path]):
    import torch
    torch.manual_seed(5)
    m = _v5_module()
    hw = (320, 320)
    batch = _letterboxed(paths, hw)
    calibrate_bn(m, batch)
    with torch.no_grad():
        for conv in m.detect.m:
            conv.weight.view(3, NC + 5, -1)[:, 4:] *= DAMP
    with torch.no_grad():
        y = m(batch)
    y = y.clamp(1e-7, 1 - 1e-7).numpy()
    obj, cls = np.log(y[..., 4] / (1 - y[..., 4])), np.log(y[..., 5:] / (1 - y[..., 5:])).max(-1)

    def count(shift: float) -> float:   # median candidates above CONF with both rows shifted
        score = 1 / (1 + np.exp(-(obj + shift))) / (1 + np.exp(-(cls + shift)))
        return float(np.quantile((score > CONF).sum(1), 0.6))

    lo, hi = -20.0, 20.0                 # bisect: score = obj x cls has no closed form
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid) < TARGET else (lo, mid)
    shift = hi
    with torch.no_grad():
        for conv in m.detect.m:
            b = conv.bias.view(3, NC + 5)
            b[:, 4:] += shift
    print(f"yolov5: objectness and class biases shifted by {shift:+.3f}")
    return m, hw


def export_torch(m, dummy, dst: Path, opset: int, names_in, names_out, dynamic=None) -> None:
    import torch
    torch.onnx.export(m, dummy, str(dst), opset_version=opset, input_names=names_in, output_names=names_out,
                      dynamic_axes=dynamic, dynamo=False)


def to_fp16_io(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers import float16
    onnx.save(float16.convert_float_to_float16(onnx.load(src), keep_io_types=False), dst)


def yolov5_nms(prediction, conf_thres=CONF, iou_thres=IOU, max_det=MAX_DET):
    """YOLOv5 v7.0 ``utils/general.py`` ``non_max_suppression`` (no masks, ``multi_label=False``,
    ``agnostic=False``, no class filter), written out from its code."""
    import torch
    import torchvision
    bs = prediction.shape[0]
    xc = prediction[..., 4] > conf_thres
    max_wh, max_nms = 7680, 30000
    output = [torch.zeros((0, 6))] * bs
    for xi, x in enumerate(prediction):
        x = x[xc[xi]]
        if not x.shape[0]:
            continue
        x[:, 5:] *= x[:, 4:5]                                   # conf = obj_conf * cls_conf
        box = torch.cat((x[:, :2] - x[:, 2:4] / 2, x[:, :2] + x[:, 2:4] / 2), 1)   # xywh2xyxy
        conf, j = x[:, 5:].max(1, keepdim=True)
        x = torch.cat((box, conf, j.float()), 1)[conf.view(-1) > conf_thres]
        if not x.shape[0]:
            continue
        x = x[x[:, 4].argsort(descending=True)[:max_nms]]
        c = x[:, 5:6] * max_wh
        i = torchvision.ops.nms(x[:, :4] + c, x[:, 4], iou_thres)[:max_det]
        output[xi] = x[i]
    return output


def reference_v5(path: Path, paths: list[Path], hw) -> dict[str, np.ndarray]:
    import cv2
    import onnxruntime as ort
    import torch
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.ops import scale_boxes
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dtype = np.float16 if "float16" in sess.get_inputs()[0].type else np.float32
    out = {}
    for p in paths:
        im0 = cv2.imread(str(p))
        im = LetterBox(hw, auto=False, stride=32)(image=im0)[:, :, ::-1].transpose(2, 0, 1)[None]
        x = (np.ascontiguousarray(im).astype(np.float32) / 255).astype(dtype)
        y = sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float32)
        det = yolov5_nms(torch.from_numpy(y))[0]
        det[:, :4] = scale_boxes(hw, det[:, :4], im0.shape[:2])
        _put(out, p, det[:, :4].numpy(), det[:, 4].numpy(), det[:, 5].numpy())
    return out


# -- DETR-style head --------------------------------------------------------------------------------
DETR_Q = 20


def _detr_module():
    import torch
    from torch import nn

    class TinyDETR(nn.Module):
        """DETR's output contract (Carion et al. 2020): ``pred_logits [B, Q, C+1]`` (last = no
        object) and ``pred_boxes [B, Q, 4]`` = sigmoid of normalised cx, cy, w, h."""

        def __init__(self, d=32):
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(3, 16, 4, 4), nn.BatchNorm2d(16), nn.ReLU(),
                                          nn.Conv2d(16, d, 4, 4), nn.BatchNorm2d(d), nn.ReLU())
            self.pos = nn.Parameter(torch.randn(1, 20 * 20, d) * 0.1)
            self.query = nn.Parameter(torch.randn(1, DETR_Q, d) * 0.1)
            self.decoder = nn.TransformerDecoderLayer(d, 4, 64, dropout=0.0, batch_first=True)
            self.class_embed = nn.Linear(d, NC + 1)
            self.bbox_embed = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 4))

        def forward(self, x):
            f = self.backbone(x).flatten(2).transpose(1, 2) + self.pos
            h = self.decoder(self.query.expand(x.shape[0], -1, -1), f)
            return self.class_embed(h), self.bbox_embed(h).sigmoid()

    return TinyDETR()


IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def _detr_batch(paths: list[Path], hw) -> np.ndarray:
    """torchvision ``Resize((h, w))`` on a PIL image is Pillow's bilinear resize; then
    ``ToTensor`` and ImageNet ``Normalize`` (DETR's ``make_coco_transforms``, eval branch)."""
    from PIL import Image
    xs = []
    for p in paths:
        im = Image.open(p).convert("RGB").resize((hw[1], hw[0]), Image.BILINEAR)
        xs.append(((np.asarray(im, np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    return np.stack(xs).astype(np.float32)


def build_detr(paths: list[Path]):
    import torch
    torch.manual_seed(7)
    m = _detr_module()
    hw = (320, 320)
    batch = torch.from_numpy(_detr_batch(paths, hw))
    calibrate_bn(m, batch)
    with torch.no_grad():
        logits, _ = m(batch)
        prob = logits.softmax(-1)[..., :-1].amax(-1).clamp(1e-7, 1 - 1e-7).numpy()
    # raise the object classes against the no-object slot until ~8 of the 20 queries pass
    global TARGET
    keep, TARGET = TARGET, 8
    shift = _shift_for(np.log(prob / (1 - prob)))
    TARGET = keep
    with torch.no_grad():
        m.class_embed.bias[:-1] += shift
    print(f"detr: object-class biases shifted by {shift:+.3f}")
    return m, hw


def detr_postprocess(logits: np.ndarray, boxes: np.ndarray, size_wh: tuple[int, int]):
    """DETR ``models/detr.py`` ``PostProcess.forward`` for one image (target size = the image's
    height and width), then the score threshold."""
    import torch
    out_logits, out_bbox = torch.from_numpy(logits), torch.from_numpy(boxes)
    prob = out_logits.softmax(-1)
    scores, labels = prob[..., :-1].max(-1)
    cx, cy, w, h = out_bbox.unbind(-1)
    b = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
    img_w, img_h = size_wh
    b = b * torch.tensor([img_w, img_h, img_w, img_h], dtype=torch.float32)[None, None]
    keep = scores[0] > CONF
    return b[0][keep].numpy(), scores[0][keep].numpy(), labels[0][keep].numpy()


def reference_detr(path: Path, paths: list[Path], hw) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    from PIL import Image
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = {}
    for p in paths:
        logits, boxes = sess.run(["logits", "pred_boxes"], {"images": _detr_batch([p], hw)})
        _put(out, p, *detr_postprocess(logits, boxes, Image.open(p).size))
    return out


# -- driver -----------------------------------------------------------------------------------------
def main() -> None:
    import tempfile

    import torch
    OUT.mkdir(parents=True, exist_ok=True)
    REF.mkdir(parents=True, exist_ok=True)
    paths = make_images()
    manifest: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cwd = os.getcwd()
        os.chdir(work)                                     # Ultralytics writes its exports beside the yaml
        try:
            for family in ULTRA:
                yolo, hw = build_ultralytics(family, paths, work)
                for export, entry in export_ultralytics(family, yolo, hw, work).items():
                    name = f"{family}_{export}"
                    manifest[name] = dict(entry, family=family, export=export, input_hw=list(hw),
                                          reference="ultralytics predictor" if export != "uint8" else
                                          "ultralytics LetterBox + non_max_suppression + scale_boxes")
            rt, hw = build_rtdetr(paths, work)
            f = Path(rt.export(format="onnx", imgsz=list(hw), opset=17, simplify=False))
            import onnx
            mo = onnx.load(f)
            _stable_metadata(mo)
            onnx.save(mo, OUT / "rtdetr_op17.onnx")
            manifest["rtdetr_op17"] = {"file": "rtdetr_op17.onnx", "family": "rtdetr", "export": "op17",
                                       "input_hw": list(hw), "exporter": f"ultralytics {_ultra_version()} "
                                       "RTDETR(yaml).export(opset=17)", "reference": "ultralytics RTDETRPredictor"}
        finally:
            os.chdir(cwd)
        m, hw = build_v5(paths)
        dummy = torch.zeros(1, 3, *hw)
        for opset in (13, 17):
            export_torch(m, dummy, OUT / f"yolov5_op{opset}.onnx", opset, ["images"], ["output0"])
            manifest[f"yolov5_op{opset}"] = {"file": f"yolov5_op{opset}.onnx", "family": "yolov5", "export": f"op{opset}",
                                             "input_hw": list(hw), "exporter": f"torch {torch.__version__} "
                                             f"torch.onnx.export(opset_version={opset}, dynamo=False)",
                                             "reference": "yolov5 non_max_suppression (written from its code)"}
        to_fp16_io(OUT / "yolov5_op17.onnx", OUT / "yolov5_fp16io.onnx")
        manifest["yolov5_fp16io"] = dict(manifest["yolov5_op17"], file="yolov5_fp16io.onnx", export="fp16io",
                                         exporter="the op17 file through onnxruntime float16.convert_float_to_float16"
                                                  "(keep_io_types=False)")
        for name in ("yolov5_op13", "yolov5_op17", "yolov5_fp16io"):   # no metadata: YOLOv5's letterbox declared
            manifest[name]["sidecar"] = {"resize": "letterbox", "resample": "cv2-linear", "uint8_resize": True,
                                         "pad_color": [114, 114, 114], "preprocess": "unit"}
        d, hw = build_detr(paths)
        export_torch(d, torch.zeros(1, 3, *hw), OUT / "detr_op17.onnx", 17, ["images"], ["logits", "pred_boxes"],
                     dynamic={"images": {0: "batch"}, "logits": {0: "batch"}, "pred_boxes": {0: "batch"}})
        manifest["detr_op17"] = {"file": "detr_op17.onnx", "family": "detr", "export": "op17", "input_hw": list(hw),
                                 "exporter": f"torch {torch.__version__} torch.onnx.export(opset_version=17, dynamo=False)",
                                 "reference": "DETR PostProcess (written from its code)",
                                 "sidecar": {"resize": "squash", "resample": "bilinear", "uint8_resize": True,
                                             "preprocess": "imagenet"}}
    for name, entry in manifest.items():
        if "sidecar" in entry:
            (OUT / (Path(entry["file"]).stem + ".json")).write_text(json.dumps(entry["sidecar"]) + "\n")
        path = OUT / entry["file"]
        hw = tuple(entry["input_hw"])
        if entry["family"] in ULTRA:
            ref = reference_ultralytics(path, entry["export"], paths, hw)
        elif entry["family"] == "yolov5":
            ref = reference_v5(path, paths, hw)
        elif entry["family"] == "rtdetr":
            ref = reference_rtdetr(path, paths, hw)
        else:
            ref = reference_detr(path, paths, hw)
        np.savez_compressed(REF / f"{name}.npz", **ref)
        counts = [len(ref[f"{p.name}/scores"]) for p in paths]
        entry["detections"] = dict(zip((p.name for p in paths), counts))
        if entry["export"] == "dyn":
            entry["detections_default_rect"] = dict(zip((p.name for p in paths), rect_counts(path, paths, hw)))
        print(f"{name:16s} {path.stat().st_size / 1e3:6.0f} kB  detections per image {counts}")
    (REF / "zoo.json").write_text(json.dumps({"images": [str(p.relative_to(ROOT)) for p in paths],
                                              "conf": CONF, "iou": IOU, "max_det": MAX_DET,
                                              "models": manifest}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
