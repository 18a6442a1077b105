"""Train the tiny "planted cue" detector and export it to ONNX in Ultralytics' layout (dev-only).

    python models/planted_detector.py          # needs torch 2.x (CPU), onnx, onnxruntime; minutes on 2 cores

It needs no Ultralytics and no torchvision: the head is written here in the style of a YOLOv8
detection head (anchor-free, one anchor per stride-8 cell, per-class sigmoid, no objectness), and
its export has the exact layout an Ultralytics export has, so ``blackbox_cam``'s detector reader
decodes it as one: output ``[B, 4 + C, A]`` (cx, cy, w, h in input pixels, then the C class
probabilities), ``metadata_props`` written as Ultralytics writes them (``str(value)``: ``task``
``detect``, ``names`` ``{0: 'red_tag', 1: 'blue_tag'}``, ``imgsz``, ``stride``, ``batch``).

Task (the known evidence). 128 x 128 RGB scenes: smooth colour noise, 2-4 grey-ish rectangles or
ellipses (26-44 px). Some shapes carry a small square mark (7 x 7 px) inside one of their
corners: a red mark makes the shape an object of class 0 (``red_tag``), a blue mark one of class
1 (``blue_tag``); shapes without a mark are distractors, not objects. So the box covers the
whole shape, but whether there is an object *and* its class are decided by the mark alone: a
faithful per-detection map must peak on the mark (``cue`` box), not on the shape's body.

Model (PlantedDetector, about 30 k parameters): three 3 x 3 stride-2 convolutions (16, 24, 32
channels) to stride 8, two 3 x 3 convolutions of dilation 2 at stride 8 (receptive field 79 px), then a
1 x 1 head: 4 box distances (left, top, right, bottom from the cell centre, in stride units,
through softplus) and C class logits. Output = decoded boxes and sigmoid scores, 256 anchors.
Training: 2000 scenes (seed 0), 6 epochs, batch 32, AdamW + one-cycle LR; positives are the
cells whose centre lies in the central half of an object's box (a simple "centre sampling" as
in FCOS / YOLOv8's task-aligned assigner's candidates), class loss BCE on every cell
(negatives weighted by 0.5), box loss L1 on the distances + (1 - IoU) on positives.
Seeds: torch.manual_seed(0), numpy seeds as listed; torch.set_num_threads(2).

Outputs in models/planted_detector/:
    planted_detector.onnx   images float32 NCHW [N,3,128,128] (v/255) -> output0 [N,6,256]; opset 17
    planted_detector.json   its sidecar: unit preprocessing (v/255), squash (the scenes are 128 x 128)
    heldout.npz             scenes from seed 2 (never trained on): images uint8 [S,128,128,3],
                            boxes float32 [S,4,4] (x0,y0,x1,y1; pixels, half-open), cues float32
                            [S,4,4] (the mark's box), classes int64 [S,4], count int64 [S]
                            (objects per scene; rows past it are padding, -1 classes)
The script prints held-out recall / precision at IoU 0.5 (score 0.25, class-aware NMS 0.45),
the class accuracy of matched detections, and what happens when each object's mark is painted
over with the shape's colour (the detection should disappear) or a same-size patch of the body
away from the mark is (it should stay).
"""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "planted_detector")
SIZE, STRIDE, CUE = 128, 8, 7
NAMES = {0: "red_tag", 1: "blue_tag"}
CUE_COLOURS = np.array([[225, 30, 30], [30, 70, 235]], np.float32)
N_TRAIN, EPOCHS, BATCH, LR = 2000, 6, 32, 6e-3
SEED_TRAIN, SEED_VAL, SEED_HELDOUT = 0, 1, 2
N_HELDOUT = 60
MAX_OBJ = 4


# -- data ---------------------------------------------------------------------------------------
def _background(rng: np.random.Generator) -> np.ndarray:
    low = rng.uniform(60, 190, size=(5, 5, 3))
    ys = np.linspace(0, 4, SIZE)
    i0 = np.minimum(np.floor(ys).astype(int), 3)
    f = (ys - i0)[:, None]
    rows = low[i0] * (1 - f[..., None]) + low[i0 + 1] * f[..., None]          # (SIZE, 5, 3)
    img = rows[:, i0] * (1 - f[None, :, :]) + rows[:, i0 + 1] * f[None, :, :]  # (SIZE, SIZE, 3)
    return img + rng.normal(0, 6, size=img.shape)


def make_scene(rng: np.random.Generator):
    """One scene: (uint8 image, object boxes [k,4], cue boxes [k,4], classes [k])."""
    img = _background(rng)
    placed: list[tuple[float, float, float, float]] = []
    boxes, cues, classes = [], [], []
    n_shapes = int(rng.integers(2, 5))
    n_obj = int(rng.integers(1, min(3, n_shapes) + 1))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    for k in range(n_shapes):
        for _ in range(50):
            w, h = rng.uniform(26, 44, size=2)
            x0, y0 = rng.uniform(2, SIZE - 2 - w), rng.uniform(2, SIZE - 2 - h)
            b = (x0, y0, x0 + w, y0 + h)
            if all(b[0] > p[2] + 3 or b[2] < p[0] - 3 or b[1] > p[3] + 3 or b[3] < p[1] - 3 for p in placed):
                break
        else:
            continue
        placed.append(b)
        x0, y0, x1, y1 = (int(round(v)) for v in b)
        grey = rng.uniform(90, 200)
        colour = grey + rng.uniform(-20, 20, size=3)
        if rng.random() < 0.5:
            inside = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
        else:
            cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        img[inside] = colour + rng.normal(0, 4, size=(int(inside.sum()), 3))
        if k < n_obj:
            cls = int(rng.integers(0, 2))
            corner = int(rng.integers(0, 4))
            ellipse = not inside[y0, x0]
            inset = 5 if ellipse else 2  # inside an ellipse the corner square sits nearer the centre
            inset = int(round(min(x1 - x0, y1 - y0) * 0.17)) if ellipse else inset
            cx0 = x0 + inset if corner in (0, 2) else x1 - inset - CUE
            cy0 = y0 + inset if corner in (0, 1) else y1 - inset - CUE
            img[cy0:cy0 + CUE, cx0:cx0 + CUE] = CUE_COLOURS[cls] + rng.normal(0, 4, size=(CUE, CUE, 3))
            boxes.append((x0, y0, x1, y1))
            cues.append((cx0, cy0, cx0 + CUE, cy0 + CUE))
            classes.append(cls)
    return (np.clip(np.rint(img), 0, 255).astype(np.uint8), np.array(boxes, np.float32).reshape(-1, 4),
            np.array(cues, np.float32).reshape(-1, 4), np.array(classes, np.int64))


def make_dataset(n: int, seed: int):
    rng = np.random.default_rng(seed)
    imgs = np.empty((n, SIZE, SIZE, 3), np.uint8)
    boxes = np.zeros((n, MAX_OBJ, 4), np.float32)
    cues = np.zeros((n, MAX_OBJ, 4), np.float32)
    classes = np.full((n, MAX_OBJ), -1, np.int64)
    count = np.zeros(n, np.int64)
    for i in range(n):
        im, b, c, k = make_scene(rng)
        imgs[i], count[i] = im, len(k)
        boxes[i, :len(k)], cues[i, :len(k)], classes[i, :len(k)] = b, c, k
    return imgs, boxes, cues, classes, count


# -- model --------------------------------------------------------------------------------------
def build_model():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    g = SIZE // STRIDE
    centres = (torch.arange(g, dtype=torch.float32) + 0.5) * STRIDE
    cy, cx = torch.meshgrid(centres, centres, indexing="ij")

    def block(cin, cout, stride, dilation=1):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, bias=False),
                             nn.BatchNorm2d(cout), nn.SiLU())

    class PlantedDetector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(block(3, 16, 2), block(16, 24, 2), block(24, 32, 2))
            self.neck = nn.Sequential(block(32, 32, 1, 2), block(32, 32, 1, 2))
            self.head = nn.Conv2d(32, 4 + len(NAMES), 1)
            self.register_buffer("cx", cx.reshape(1, -1))
            self.register_buffer("cy", cy.reshape(1, -1))

        def raw(self, x):
            """(distances [N, A, 4] in pixels, class logits [N, A, C])."""
            h = self.head(self.neck(self.stem(x))).flatten(2).transpose(1, 2)
            return F.softplus(h[..., :4]) * STRIDE, h[..., 4:]

        def forward(self, x):  # Ultralytics' layout: [N, 4 + C, A], cx cy w h in pixels, sigmoid scores
            d, logits = self.raw(x)
            x0, y0 = self.cx - d[..., 0], self.cy - d[..., 1]
            x1, y1 = self.cx + d[..., 2], self.cy + d[..., 3]
            box = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=1)
            return torch.cat([box, torch.sigmoid(logits).transpose(1, 2)], dim=1)

    return PlantedDetector(), cx.reshape(-1).numpy(), cy.reshape(-1).numpy()


def targets(boxes, classes, count, cx, cy):
    """Per image and anchor: class index (-1 = background) and the l, t, r, b distances."""
    n, a = len(count), len(cx)
    cls = np.full((n, a), -1, np.int64)
    dist = np.zeros((n, a, 4), np.float32)
    for i in range(n):
        for k in range(count[i]):
            x0, y0, x1, y1 = boxes[i, k]
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            hw, hh = max((x1 - x0) / 4, STRIDE / 2), max((y1 - y0) / 4, STRIDE / 2)
            pos = (np.abs(cx - mx) <= hw) & (np.abs(cy - my) <= hh)
            cls[i, pos] = classes[i, k]
            dist[i, pos] = np.stack([cx[pos] - x0, cy[pos] - y0, x1 - cx[pos], y1 - cy[pos]], 1)
    return cls, dist


def to_input(imgs):
    import torch
    return torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float().div_(255.0)


def train():
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    torch.set_num_threads(2)
    model, cx, cy = build_model()
    imgs, boxes, _cues, classes, count = make_dataset(N_TRAIN, SEED_TRAIN)
    cls_t, dist_t = targets(boxes, classes, count, cx, cy)
    cls_t, dist_t = torch.from_numpy(cls_t), torch.from_numpy(dist_t)
    steps = EPOCHS * math.ceil(N_TRAIN / BATCH)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    gen = torch.Generator().manual_seed(0)
    t0 = time.time()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(N_TRAIN, generator=gen)
        total = 0.0
        for s in range(0, N_TRAIN, BATCH):
            idx = perm[s:s + BATCH]
            x = to_input(imgs[idx.numpy()])
            if torch.rand((), generator=gen) < 0.5:  # brightness jitter
                x = (x * (0.8 + 0.4 * torch.rand((), generator=gen))).clamp(0, 1)
            d, logits = model.raw(x)
            ct, dt = cls_t[idx], dist_t[idx]
            onehot = F.one_hot(ct.clamp(min=0), len(NAMES)).float() * (ct >= 0)[..., None]
            weight = torch.where(ct >= 0, 1.0, 0.5)[..., None]
            loss_cls = (F.binary_cross_entropy_with_logits(logits, onehot, reduction="none") * weight).sum() / \
                max(1.0, float((ct >= 0).sum()))
            pos = ct >= 0
            if pos.any():
                dp, tp = d[pos], dt[pos]
                inter = (torch.minimum(dp[:, 0], tp[:, 0]) + torch.minimum(dp[:, 2], tp[:, 2])) * \
                        (torch.minimum(dp[:, 1], tp[:, 1]) + torch.minimum(dp[:, 3], tp[:, 3]))
                union = (dp[:, 0] + dp[:, 2]) * (dp[:, 1] + dp[:, 3]) + (tp[:, 0] + tp[:, 2]) * (tp[:, 1] + tp[:, 3]) - inter
                loss_box = (F.l1_loss(dp / STRIDE, tp / STRIDE) + (1 - inter / union).mean())
            else:
                loss_box = torch.zeros(())
            loss = loss_cls + 2.0 * loss_box
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        print(f"epoch {epoch + 1}/{EPOCHS}: loss {total / N_TRAIN:.4f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    return model


# -- evaluation (numpy; the reference decode + NMS written here, independent of blackbox_cam) ----------
def iou(a, b):
    x0, y0 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x1, y1 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def decode(out, conf=0.25, iou_thr=0.45):
    """Ultralytics-style: [4 + C, A] -> (boxes xyxy, scores, classes) after class-aware greedy NMS."""
    cxcywh, scores = out[:4].T, out[4:].T
    cls, sc = scores.argmax(1), scores.max(1)
    keep = sc > conf
    b = np.concatenate([cxcywh[keep, :2] - cxcywh[keep, 2:] / 2, cxcywh[keep, :2] + cxcywh[keep, 2:] / 2], 1)
    cls, sc = cls[keep], sc[keep]
    order = np.argsort(-sc)
    chosen = []
    while len(order):
        i = order[0]
        chosen.append(i)
        rest = order[1:]
        ov = iou(b[i:i + 1], b[rest])[0]
        order = rest[(ov <= iou_thr) | (cls[rest] != cls[i])]
    return b[chosen], sc[chosen], cls[chosen]


def evaluate(run, imgs, boxes, cues, classes, count, label: str) -> None:
    outs = run(imgs)
    tp = fp = n_obj = correct = 0
    for i, out in enumerate(outs):
        b, s, c = decode(out)
        gt = boxes[i, :count[i]]
        n_obj += count[i]
        matched = set()
        if len(b) and len(gt):
            ov = iou(b, gt)
            for j in range(len(b)):
                k = int(ov[j].argmax())
                if ov[j, k] >= 0.5 and k not in matched:
                    matched.add(k)
                    tp += 1
                    correct += int(c[j] == classes[i, k])
                else:
                    fp += 1
        else:
            fp += len(b)
    print(f"{label}: recall {tp / max(1, n_obj):.3f}, precision {tp / max(1, tp + fp):.3f}, "
          f"class accuracy of matches {correct / max(1, tp):.3f}")


def ablations(run, imgs, boxes, cues, count) -> None:
    """Paint each object's mark with its body colour (should kill it) or a same-size body patch away from it."""
    for what in ("mark", "body patch"):
        kept = total = 0
        for i in range(len(imgs)):
            for k in range(count[i]):
                im = imgs[i].copy()
                x0, y0, x1, y1 = boxes[i, k].astype(int)
                q0, r0 = cues[i, k].astype(int)[:2]
                body = np.median(im[(y0 + y1) // 2 - 2:(y0 + y1) // 2 + 3, (x0 + x1) // 2 - 2:(x0 + x1) // 2 + 3]
                                 .reshape(-1, 3), axis=0)
                if what == "mark":
                    im[r0:r0 + CUE, q0:q0 + CUE] = body
                else:  # the patch mirrored through the box centre: on the body, away from the mark
                    px, py = x0 + x1 - q0 - CUE, y0 + y1 - r0 - CUE
                    im[py:py + CUE, px:px + CUE] = body
                b, s, c = decode(run(im[None])[0])
                total += 1
                kept += int(len(b) > 0 and iou(boxes[i, k:k + 1], b).max() >= 0.5)
        print(f"{what} painted over: the object is still detected in {kept}/{total}")


def export(model, path: str) -> None:
    import onnx
    import torch

    x = torch.zeros(1, 3, SIZE, SIZE)
    torch.onnx.export(model, (x,), path, input_names=["images"], output_names=["output0"], opset_version=17,
                      dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}}, dynamo=False)
    m = onnx.load(path)
    meta = {"description": "planted-cue detector (blackbox-cam models/planted_detector.py)",
            "author": "blackbox-cam", "task": "detect", "batch": "1", "stride": str(STRIDE),
            "imgsz": str([SIZE, SIZE]), "names": str(NAMES)}
    del m.metadata_props[:]
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, path)


def main() -> None:
    import onnxruntime as ort

    os.makedirs(OUT, exist_ok=True)
    model = train()
    path = os.path.join(OUT, "planted_detector.onnx")
    export(model, path)
    with open(os.path.join(OUT, "planted_detector.json"), "w") as f:
        f.write('{"preprocess": "unit", "resize": "squash", "layout": "NCHW"}\n')
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run(imgs):
        return sess.run(None, {"images": to_input(imgs).numpy()})[0]

    evaluate(run, *make_dataset(500, SEED_VAL), "validation (seed 1, 500 scenes)")
    held = make_dataset(N_HELDOUT, SEED_HELDOUT)
    evaluate(run, *held, f"held-out (seed 2, {N_HELDOUT} scenes)")
    imgs, boxes, cues, classes, count = held
    ablations(run, imgs, boxes, cues, count)
    np.savez_compressed(os.path.join(OUT, "heldout.npz"), images=imgs, boxes=boxes, cues=cues, classes=classes,
                        count=count)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB) and heldout.npz")


if __name__ == "__main__":
    sys.exit(main())
