"""Train the tiny "planted evidence" classifier and export it (+ variants) to ONNX (dev-only).

    python models/train_planted.py            # needs torch==2.13.0 (CPU), onnx, onnxruntime

Task (see planted_data.py): 64x64 RGB images with smooth colour noise, random blobs and 1-3
distractor shapes in non-target colours; the label (0 square, 1 cross, 2 ring, 3 triangle)
is the shape of the single small (8-12 px) object drawn in the fixed bright colour
(255,220,40) at a random position. The object is the only class evidence, so a correct
saliency map must peak inside its bounding box.

Model (PlantedNet, 16,244 parameters, CAM-style: Grad-CAM at relu4 equals CAM):
    conv1 3->16 3x3 +BN+ReLU, pool1 (max 2) -> 32x32
    conv2 16->32 3x3 +BN+ReLU, pool2 (max 2) -> 16x16
    conv3 32->32 3x3 +BN+ReLU, conv4 32->48 1x1 +BN+ReLU (16x16 x 4 px cells, last feature
    map "/relu4/Relu", receptive field 18 px)
    gap (global average pool) -> flatten -> fc 48->4 (logits)
Loss: cross-entropy + 0.05 * mean(relu4 activations) (an L1 sparsity term; without it the
CAM argmax fell inside the object box only ~60% of the time, the background carrying a
class-independent offset). BatchNorm is folded into the convs by the exporter (eval mode).
Input: unit preprocessing, x = v/255, NCHW.
The script prints: held-out accuracy; accuracy when the object is painted over (should be
~chance) vs a random same-size box painted (should stay ~100%); a CAM pointing game.

Data: training set make_dataset(16000, seed=0), 3 epochs, batch 64, AdamW + one-cycle LR; held-out accuracy on make_dataset(2000,
seed=1); heldout.npz from make_dataset(200, seed=2) (first 50 that planted.onnx classifies
correctly). Seeds: torch.manual_seed(0), torch.set_num_threads(1).

Outputs in models/planted/ (all opset 17, TorchScript exporter, dynamo=False), each with a
sidecar <stem>.json:
    planted.onnx               image float32 NCHW [N,3,64,64] (v/255) -> logits [N,4]
    planted_nhwc.onnx          image float32 NHWC [N,64,64,3] (v/255), Transpose in graph
    planted_fixed1.onnx        as planted.onnx with batch fixed to 1 (input and output)
    planted_softmax.onnx       as planted.onnx + trailing Softmax -> probabilities [N,4]
    planted_uint8.onnx         image uint8 NHWC [N,64,64,3] 0..255; Cast, /255, Transpose in graph
    planted_fixed1_reshape.onnx batch 1 fixed; the flatten is a Reshape to the constant shape
                               [1,-1], so the graph can not be made dynamic-batch
    planted_labels.txt, heldout.npz (images uint8 [50,64,64,3], labels int64 [50],
                               boxes int64 [50,4] as x0,y0,x1,y1 inclusive-exclusive)
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from planted_data import CLASSES, make_dataset  # noqa: E402

OUT = os.path.join(HERE, "planted")
N_TRAIN, EPOCHS, BATCH, LR = 16000, 3, 64, 3e-3
SEED_TRAIN, SEED_VAL, SEED_HELDOUT = 0, 1, 2
SPARSITY = 0.05  # L1 weight on the relu4 activations (keeps off-object features at ~0)


class PlantedNet(nn.Module):
    def __init__(self, hardcode_batch1: bool = False):
        super().__init__()
        self.hardcode_batch1 = hardcode_batch1

        def block(cin, cout):
            return nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()

        self.conv1, self.bn1, self.relu1 = block(3, 16)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2, self.bn2, self.relu2 = block(16, 32)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3, self.bn3, self.relu3 = block(32, 32)
        self.conv4 = nn.Conv2d(32, 48, 1, bias=False)  # 1x1: keeps the receptive field tight (18 px)
        self.bn4, self.relu4 = nn.BatchNorm2d(48), nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(48, len(CLASSES))

    def features(self, x):
        """Last feature map (relu4 output) [N,48,16,16]."""
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.relu4(self.bn4(self.conv4(x)))

    def head(self, f):
        x = self.gap(f)
        x = x.reshape(1, -1) if self.hardcode_batch1 else torch.flatten(x, 1)
        return self.fc(x)

    def forward(self, x):
        return self.head(self.features(x))


class NHWC(nn.Module):
    """float NHWC input -> Transpose -> net."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.permute(0, 3, 1, 2))


class Uint8NHWC(nn.Module):
    """uint8 NHWC 0..255 -> Cast -> /255 -> Transpose -> net."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net((x.to(torch.float32) / 255.0).permute(0, 3, 1, 2))


class WithSoftmax(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.softmax(self.net(x), dim=1)


def to_input(imgs_uint8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs_uint8).permute(0, 3, 1, 2).float().div_(255.0)


@torch.no_grad()
def accuracy(model, imgs, labels, bs=500) -> float:
    model.eval()
    pred = torch.cat([model(to_input(imgs[i:i + bs])).argmax(1) for i in range(0, len(imgs), bs)])
    return float((pred.numpy() == labels).mean())


def train(data: tuple[np.ndarray, np.ndarray] | None = None) -> PlantedNet:
    """Train a PlantedNet on ``data = (images uint8 [N,64,64,3], labels)`` (default: the planted set).

    Also used by ``train_clever_hans.py`` for its biased and clean training sets.
    """
    torch.manual_seed(0)
    t0 = time.time()
    xtr, ytr = data if data is not None else make_dataset(N_TRAIN, SEED_TRAIN)[:2]
    n_train = len(xtr)
    print(f"{n_train} training images ready in {time.time() - t0:.1f}s")
    model = PlantedNet()
    print("parameters:", sum(p.numel() for p in model.parameters()))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    steps = EPOCHS * math.ceil(n_train / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(0)
    ytr_t = torch.from_numpy(ytr)
    t0 = time.time()
    for ep in range(EPOCHS):
        model.train()
        perm = torch.randperm(n_train, generator=g).numpy()
        tot, n = 0.0, 0
        for i in range(0, n_train, BATCH):
            idx = perm[i:i + BATCH]
            feats = model.features(to_input(xtr[idx]))
            loss = F.cross_entropy(model.head(feats), ytr_t[idx]) + SPARSITY * feats.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            n += len(idx)
        print(f"epoch {ep + 1}/{EPOCHS}: train loss {tot / n:.4f}  ({time.time() - t0:.0f}s)", flush=True)
    print(f"training time: {time.time() - t0:.0f}s")
    return model.eval()


def export(module: nn.Module, dummy: torch.Tensor, stem: str, dynamic: bool, out_name="logits") -> str:
    path = os.path.join(OUT, stem + ".onnx")
    torch.onnx.export(
        module.eval(), (dummy,), path, input_names=["image"], output_names=[out_name],
        dynamic_axes={"image": {0: "N"}, out_name: {0: "N"}} if dynamic else None,
        opset_version=17, do_constant_folding=True, dynamo=False,
    )
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [17]
    return path


def sidecar(stem: str, layout: str, raw: bool = False) -> None:
    if raw:
        d = {"preprocess": "raw", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "scale": 1.0}
    else:
        d = {"preprocess": "unit", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "scale": 255.0}
    d.update({"bgr": False, "layout": layout, "labels": "planted_labels.txt", "resize": "squash"})
    with open(os.path.join(OUT, stem + ".json"), "w") as f:
        f.write(json.dumps(d) + "\n")


def ort_run(path: str, x: np.ndarray, batch1: bool = False) -> np.ndarray:
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    if batch1:
        return np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    return s.run(None, {name: x})[0]


def main() -> None:
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    model = train()
    xva, yva, bva = make_dataset(2000, SEED_VAL)
    acc = accuracy(model, xva, yva)
    print(f"held-out accuracy (2000 images, seed {SEED_VAL}): {acc:.4f}")

    # Evidence check: paint over the object's box (dilated by 1 px) with the median colour of
    # the 3-px frame around it, vs. the same paint at a random non-overlapping box.
    rng = np.random.default_rng(7)
    xo, xr = xva.copy(), xva.copy()
    for i, (x0, y0, x1, y1) in enumerate(bva):
        a0, b0, a1, b1 = max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 1, 64), min(y1 + 1, 64)
        f0, g0, f1, g1 = max(a0 - 3, 0), max(b0 - 3, 0), min(a1 + 3, 64), min(b1 + 3, 64)
        frame = xva[i, g0:g1, f0:f1].reshape(-1, 3)
        col = np.median(frame, axis=0).astype(np.uint8)
        xo[i, b0:b1, a0:a1] = col
        w, h = a1 - a0, b1 - b0
        while True:
            rx, ry = rng.integers(0, 64 - w + 1), rng.integers(0, 64 - h + 1)
            if rx + w <= a0 or a1 <= rx or ry + h <= b0 or b1 <= ry:
                break
        xr[i, ry:ry + h, rx:rx + w] = col
    acc_obj = accuracy(model, xo, yva)
    acc_rnd = accuracy(model, xr, yva)
    print(f"accuracy with the object painted over: {acc_obj:.4f}; with a random same-size box "
          f"painted instead: {acc_rnd:.4f}")

    # CAM pointing game: the argmax cell of the class activation map (fc weights x conv4/relu4
    # features, 16x16 cells of 4x4 px) for the true class falls inside the object's box
    # (dilated by 2 px).
    with torch.no_grad():
        f = model.features(to_input(xva))
        cam = torch.einsum("nkhw,nk->nhw", f, model.fc.weight[torch.from_numpy(yva)]).numpy()
    am = cam.reshape(len(cam), -1).argmax(1)
    r, c = am // 16, am % 16  # argmax cell covers pixels [4c, 4c+4) x [4r, 4r+4)
    for tol in (0, 4):
        hit = ((4 * c + 4 + tol > bva[:, 0]) & (4 * c - tol < bva[:, 2])
               & (4 * r + 4 + tol > bva[:, 1]) & (4 * r - tol < bva[:, 3]))
        print(f"CAM pointing game: argmax cell within {tol} px of the object box: {hit.mean():.4f}")
    up = np.maximum(cam, 0).repeat(4, 1).repeat(4, 2)
    inside = [up[i, y0:y1, x0:x1].sum() / max(up[i].sum(), 1e-12) for i, (x0, y0, x1, y1) in enumerate(bva)]
    print(f"CAM: mean share of positive CAM mass inside the object box: {np.mean(inside):.3f}")

    with open(os.path.join(OUT, "planted_labels.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")

    d4 = torch.zeros(2, 3, 64, 64)
    nhwc = torch.zeros(2, 64, 64, 3)
    base = export(model, d4, "planted", True)
    sidecar("planted", "NCHW")
    export(NHWC(model), nhwc, "planted_nhwc", True)
    sidecar("planted_nhwc", "NHWC")
    export(model, d4[:1], "planted_fixed1", False)
    sidecar("planted_fixed1", "NCHW")
    export(WithSoftmax(model), d4, "planted_softmax", True, out_name="probabilities")
    sidecar("planted_softmax", "NCHW")
    export(Uint8NHWC(model), nhwc.to(torch.uint8), "planted_uint8", True)
    sidecar("planted_uint8", "NHWC", raw=True)
    rmodel = PlantedNet(hardcode_batch1=True)
    rmodel.load_state_dict(model.state_dict())
    export(rmodel.eval(), d4[:1], "planted_fixed1_reshape", False)
    sidecar("planted_fixed1_reshape", "NCHW")

    # ---- verification with onnxruntime ----
    sub = xva[:256]
    x_nchw = to_input(sub).numpy()
    x_nhwc = np.ascontiguousarray(sub.astype(np.float32) / 255.0)
    with torch.no_grad():
        ref_t = model(torch.from_numpy(x_nchw)).numpy()
    ref = ort_run(base, x_nchw)
    print(f"planted.onnx vs torch max abs diff: {np.abs(ref - ref_t).max():.2e}")
    ort_acc = float((ort_run(base, to_input(xva).numpy()).argmax(1) == yva).mean())
    print(f"planted.onnx (ORT) held-out accuracy: {ort_acc:.4f}")
    p = np.exp(ref - ref.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    checks = {
        "planted_nhwc": np.abs(ort_run(os.path.join(OUT, "planted_nhwc.onnx"), x_nhwc) - ref).max(),
        "planted_fixed1": np.abs(ort_run(os.path.join(OUT, "planted_fixed1.onnx"), x_nchw, True) - ref).max(),
        "planted_softmax (vs softmax of planted)":
            np.abs(ort_run(os.path.join(OUT, "planted_softmax.onnx"), x_nchw) - p).max(),
        "planted_uint8": np.abs(ort_run(os.path.join(OUT, "planted_uint8.onnx"), sub) - ref).max(),
        "planted_fixed1_reshape":
            np.abs(ort_run(os.path.join(OUT, "planted_fixed1_reshape.onnx"), x_nchw, True) - ref).max(),
    }
    for k, v in checks.items():
        print(f"{k} vs planted.onnx max abs diff (256 images): {v:.2e}")
        assert v < 1e-4, k

    # held-out demo set: the first 50 correctly classified images of seed SEED_HELDOUT
    xh, yh, bh = make_dataset(200, SEED_HELDOUT)
    ok = ort_run(base, to_input(xh).numpy()).argmax(1) == yh
    keep = np.nonzero(ok)[0][:50]
    assert len(keep) == 50
    skipped = int((~ok[:keep[-1] + 1]).sum())
    np.savez_compressed(os.path.join(OUT, "heldout.npz"), images=xh[keep], labels=yh[keep].astype(np.int64),
                        boxes=bh[keep].astype(np.int64))
    print(f"heldout.npz: 50 images (seed {SEED_HELDOUT}), skipped {skipped} misclassified "
          f"among the first {keep[-1] + 1} generated; label counts {np.bincount(yh[keep], minlength=4).tolist()}")
    for f in sorted(os.listdir(OUT)):
        print(f"  {f}: {os.path.getsize(os.path.join(OUT, f))} bytes")


if __name__ == "__main__":
    main()
