"""Make small detector exports in the layouts other families use, and their references.

Each model is a tiny convolutional backbone (three feature maps at strides 8, 16, 32 of a
320 x 320 input, random seeded weights) under the head of one family, written in torch after
that family's own code and exported with ``torch.onnx.export``, so the ONNX graph and its
outputs have exactly the family's layout:

* ``yolov5s_head``: YOLOv5's ``Detect`` (3 anchors a cell, ``xy = (2 sig - 0.5 + grid) * s``,
  ``wh = (2 sig)^2 * anchor``), output ``[1, 6300, 5 + C]`` decoded (ultralytics/yolov5
  ``models/yolo.py``);
* ``yolox_raw``: YOLOX's head exported with ``decode_in_inference=False`` (its
  ``tools/export_onnx.py`` default): ``[1, 2100, 5 + C]``, raw box regression, sigmoid objectness
  and classes (Megvii YOLOX ``yolox/models/yolo_head.py``);
* ``detr_head``: DETR's set prediction (``logits [1, Q, C + 1]`` with the no-object slot last,
  ``pred_boxes [1, Q, 4]`` sigmoid-normalised cx, cy, w, h; Hugging Face ``DetrForObjectDetection``
  output names);
* ``trt_head``: the outputs of TensorRT's ``EfficientNMS_TRT`` plugin (``num_dets``,
  ``det_boxes``, ``det_scores``, ``det_classes``) as YOLOv7/Ultralytics "end2end" TensorRT
  exports name them, made here by a top-K (the layout, not the plugin, is what is read);
* ``torchvision_head``: torchvision detection models' output (``boxes [K, 4]``,
  ``labels [K]``, ``scores [K]`` for one image, K dynamic);
* ``nms7_head``: YOLOv7's ONNX-Runtime end2end rows ``[K, 7]`` (batch, x0, y0, x1, y1, class, score).

References (stored as ``<name>_ref.npz``; the tests need no torch): the raw outputs on the
letterboxed ``rocket.jpg`` and ``astronaut.png`` as fed, and the detections the family's own
post-processing gives, written from its code in torch: YOLOv5's ``non_max_suppression``
(``conf = obj x cls``, class offset 7680, ``torchvision.ops.nms``), YOLOX's
``demo_postprocess`` grid decode then the same class-aware NMS, Hugging Face's
``post_process_object_detection`` for DETR (softmax, no-object dropped, no NMS), and for the
NMS-inside layouts the reported rows above the threshold.

Needs (dev only): torch, and for ``torchvision.ops.nms`` a torchvision or the stand-in described
in ``make_ultralytics.py``; run as ``PYTHONPATH=.:<stub dir> python models/detectors/make_heads.py``.
Seeded: running it again makes the same files.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent / "images"
REF_IMAGES = ("rocket.jpg", "astronaut.png")
SIZE = 320
C = 3  # classes
NAMES = ("person", "rocket", "tower")
CONF, IOU = 0.25, 0.45
#: The sidecar written beside each model: the preprocessing its references were made with.
SIDECAR = {"preprocess": "unit", "resize": "squash", "resample": "cv2-linear", "uint8_resize": True}


def letterbox(name: str) -> np.ndarray:
    """The input these heads' references are made on: ``cv2.resize`` INTER_LINEAR of the whole image
    to 320 x 320 (a squash, as YOLOX's and many OpenCV demos do), RGB uint8. A squash, not a
    letterbox: a letterbox's uniform grey border gives many cells exactly equal scores, and the
    order torch's unstable sort gives ties would make the reference itself ambiguous."""
    import cv2

    bgr = cv2.imread(str(IMAGES / name))
    return np.ascontiguousarray(cv2.resize(bgr, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)[..., ::-1])


def build():
    import torch
    from torch import nn

    class Backbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.SiLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.SiLU(),
                                      nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU())
            self.p4 = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU())
            self.p5 = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU())

        def forward(self, x):
            p3 = self.stem(x)
            p4 = self.p4(p3)
            return [p3, p4, self.p5(p4)]

    class YOLOv5Detect(nn.Module):
        """ultralytics/yolov5 models/yolo.py Detect, inference branch (export=True)."""
        stride = (8, 16, 32)
        anchors = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))

        def __init__(self) -> None:
            super().__init__()
            self.body = Backbone()
            self.m = nn.ModuleList(nn.Conv2d(16, 3 * (5 + C), 1) for _ in range(3))

        def forward(self, x):
            z = []
            for i, f in enumerate(self.body(x)):
                y = self.m[i](f)
                bs, _, ny, nx = y.shape
                y = y.view(bs, 3, 5 + C, ny, nx).permute(0, 1, 3, 4, 2).sigmoid()
                yv, xv = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
                grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).float() - 0.5
                anchor = torch.tensor(self.anchors[i], dtype=torch.float32).view(1, 3, 1, 1, 2)
                xy = (y[..., :2] * 2 + grid) * self.stride[i]
                wh = (y[..., 2:4] * 2) ** 2 * anchor
                z.append(torch.cat((xy, wh, y[..., 4:]), 4).view(bs, -1, 5 + C))
            return torch.cat(z, 1)

    class YOLOXHead(nn.Module):
        """Megvii YOLOX yolo_head.py, decode_in_inference=False: [reg, obj.sigmoid(), cls.sigmoid()]."""

        def __init__(self) -> None:
            super().__init__()
            self.body = Backbone()
            self.reg = nn.ModuleList(nn.Conv2d(16, 4, 1) for _ in range(3))
            self.obj = nn.ModuleList(nn.Conv2d(16, 1, 1) for _ in range(3))
            self.cls = nn.ModuleList(nn.Conv2d(16, C, 1) for _ in range(3))

        def forward(self, x):
            outs = []
            for i, f in enumerate(self.body(x)):
                o = torch.cat([self.reg[i](f) * 0.5, self.obj[i](f).sigmoid(), self.cls[i](f).sigmoid()], 1)
                outs.append(o.flatten(2))
            return torch.cat(outs, 2).permute(0, 2, 1)

    class DETRHead(nn.Module):
        """DETR's prediction heads on Q queries (class_embed with C + 1 slots, bbox_embed -> sigmoid)."""

        def __init__(self, q: int = 50) -> None:
            super().__init__()
            self.body = Backbone()
            self.q = q
            self.class_embed = nn.Linear(16, C + 1)
            self.bbox_embed = nn.Linear(16, 4)
            self.query = nn.Parameter(torch.randn(q, 100))

        def forward(self, x):
            p5 = self.body(x)[2].flatten(2)                       # [B, 16, 100]
            h = torch.einsum("bcn,qn->bqc", p5, self.query) / 10  # a stand-in for the decoder
            return self.class_embed(h), self.bbox_embed(h).sigmoid()

    class Scored(nn.Module):
        """The YOLOv5 head's boxes as xyxy with their best class and score (shared by the NMS-inside heads)."""

        def __init__(self) -> None:
            super().__init__()
            self.v5 = YOLOv5Detect()

        def top(self, x, k: int = 100):
            p = self.v5(x)[0]
            xy, wh = p[:, :2], p[:, 2:4]
            boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1)
            score, cls = (p[:, 5:] * p[:, 4:5]).max(1)
            s, i = score.topk(k)
            return boxes[i], s, cls[i]

    class TRT(Scored):
        def forward(self, x):
            b, s, c = self.top(x)
            n = (s > CONF).sum().view(1, 1).to(torch.int32)
            return n, b[None], s[None], c[None].to(torch.int32)

    class TorchvisionLike(Scored):
        def forward(self, x):
            b, s, c = self.top(x)
            keep = s > CONF
            return b[keep], c[keep].to(torch.int64), s[keep]

    class NMS7(Scored):
        def forward(self, x):
            b, s, c = self.top(x)
            keep = s > CONF
            k = int(keep.shape[0])
            rows = torch.cat([torch.zeros(k, 1), b, c[:, None].float(), s[:, None]], 1)
            return rows[keep]

    return {"yolov5s_head": (YOLOv5Detect, ["output0"]), "yolox_raw": (YOLOXHead, ["output"]),
            "detr_head": (DETRHead, ["logits", "pred_boxes"]),
            "trt_head": (TRT, ["num_dets", "det_boxes", "det_scores", "det_classes"]),
            "torchvision_head": (TorchvisionLike, ["boxes", "labels", "scores"]), "nms7_head": (NMS7, ["output"])}


def reference(name: str, outs: list, torch):
    """The family's own post-processing on the raw outputs of one image: (boxes xyxy, scores, classes)."""
    import torchvision

    def v5_nms(p):  # yolov5 utils/general.py non_max_suppression, defaults, multi_label=False
        p = p[p[:, 4] > CONF].clone()
        p[:, 5:] *= p[:, 4:5]
        box = torch.cat([p[:, :2] - p[:, 2:4] / 2, p[:, :2] + p[:, 2:4] / 2], 1)
        conf, j = p[:, 5:].max(1, keepdim=True)
        x = torch.cat((box, conf, j.float()), 1)[conf.view(-1) > CONF]
        x = x[x[:, 4].argsort(descending=True)[:30000]]
        i = torchvision.ops.nms(x[:, :4] + x[:, 5:6] * 7680, x[:, 4], IOU)[:300]
        return x[i, :4], x[i, 4], x[i, 5].long()

    if name == "yolov5s_head":
        return v5_nms(torch.from_numpy(outs[0][0]))
    if name == "yolox_raw":  # yolox/utils/demo_utils.py demo_postprocess, then the same NMS
        p = torch.from_numpy(outs[0][0]).clone()
        grids, strides = [], []
        for s in (8, 16, 32):
            h = w = SIZE // s
            yv, xv = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            grids.append(torch.stack((xv, yv), 2).reshape(-1, 2))
            strides.append(torch.full((h * w, 1), s))
        grid, stride = torch.cat(grids).float(), torch.cat(strides).float()
        p[:, :2] = (p[:, :2] + grid) * stride
        p[:, 2:4] = torch.exp(p[:, 2:4]) * stride
        return v5_nms(p)
    if name == "detr_head":  # transformers DetrImageProcessor.post_process_object_detection
        prob = torch.from_numpy(outs[0][0]).softmax(-1)[:, :-1]
        scores, labels = prob.max(-1)
        b = torch.from_numpy(outs[1][0])
        boxes = torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1) * SIZE
        keep = scores > CONF
        order = scores[keep].argsort(descending=True)
        return boxes[keep][order], scores[keep][order], labels[keep][order]
    if name == "trt_head":
        n = int(outs[0].reshape(-1)[0])
        return (torch.from_numpy(outs[1][0, :n]), torch.from_numpy(outs[2][0, :n]),
                torch.from_numpy(outs[3][0, :n]).long())
    if name == "torchvision_head":
        return torch.from_numpy(outs[0]), torch.from_numpy(outs[2]), torch.from_numpy(outs[1])
    rows = torch.from_numpy(outs[0])
    return rows[:, 1:5], rows[:, 6], rows[:, 5].long()


def tune(model, torch) -> None:
    """Score logits of a random head vary by ~0.001 across positions; spread them to a std of 2
    around -3 (measured on the first reference image, rows of the score layers only), so that a
    few dozen boxes pass 0.25 as a trained head's do. The DETR no-object slot is raised."""
    targets = {}
    for n, mod in model.named_modules():
        if n.split(".")[-2:-1] == ["m"]:          # YOLOv5: objectness and class rows of each anchor
            targets[n] = (mod, [k for k in range(mod.out_channels) if k % (5 + C) >= 4])
        elif n.split(".")[-2:-1] in (["obj"], ["cls"]) or n.endswith("class_embed"):
            targets[n] = (mod, list(range(mod.weight.shape[0])))
    seen = {}
    hooks = [mod.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, i[0])) for n, (mod, _) in targets.items()]
    x = torch.from_numpy(np.ascontiguousarray(letterbox(REF_IMAGES[0]).transpose(2, 0, 1)[None]).astype(np.float32) / 255)
    with torch.no_grad():
        model(x)
        for h in hooks:
            h.remove()
        for n, (mod, rows) in targets.items():
            inp = seen[n]
            if isinstance(mod, torch.nn.Conv2d):
                z = torch.nn.functional.conv2d(inp, mod.weight).flatten(2)[0]      # [out, positions]
            else:
                z = (inp @ mod.weight.T).reshape(-1, mod.weight.shape[0]).T         # [out, queries]
            std = z.std(dim=1).clamp_min(1e-9)
            for r in rows:
                mod.weight[r] *= 2.0 / std[r]
                mod.bias[r] = -3.0 - z[r].mean() * 2.0 / std[r]
            if n.endswith("class_embed"):
                mod.bias[-1] += 4.0  # the no-object slot wins for most queries


def make(name: str, cls, out_names: list[str]) -> None:
    import onnxruntime as ort
    import torch

    torch.manual_seed(0)
    model = cls().eval()
    tune(model, torch)
    path = HERE / f"{name}.onnx"
    dyn = {o: {0: "k"} for o in out_names} if name in ("torchvision_head", "nms7_head") else None
    torch.onnx.export(model, torch.zeros(1, 3, SIZE, SIZE), str(path), input_names=["images"], output_names=out_names,
                      opset_version=17, dynamic_axes=dyn, dynamo=False)
    import onnx

    m = onnx.load(str(path))
    if name == "detr_head":
        onnx.helper.set_model_props(m, {"names": str(dict(enumerate(NAMES)))})
    elif name != "yolox_raw":
        onnx.helper.set_model_props(m, {"names": str(dict(enumerate(NAMES)))})
    onnx.save(m, str(path))
    import json

    (HERE / f"{name}.json").write_text(json.dumps(SIDECAR, indent=2) + "\n")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    arrays = {}
    for i, im in enumerate(REF_IMAGES):
        rgb = letterbox(im)
        feed = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], np.float32) / 255.0
        outs = sess.run(out_names, {"images": feed})
        boxes, scores, classes = reference(name, outs, torch)
        for j, o in enumerate(outs):
            arrays[f"{i}_raw{j}"] = o
        arrays[f"{i}_boxes"] = boxes.numpy().astype(np.float32)
        arrays[f"{i}_scores"] = scores.numpy().astype(np.float32)
        arrays[f"{i}_classes"] = classes.numpy().astype(np.int64)
        print(name, im, [o.shape for o in outs], "detections", len(scores), file=sys.stderr)
    np.savez_compressed(HERE / f"{name}_ref.npz", images=np.array(REF_IMAGES), **arrays)


if __name__ == "__main__":
    heads = build()
    for n in sys.argv[1:] or heads:
        make(n, *heads[n])
