"""Train a small vision transformer on the planted-shapes task and export it to ONNX (dev-only).

    PYTHONPATH=. /work/scratch/devenv/bin/python models/train_planted_vit.py   # torch==2.13.0 (CPU)

Task: the same as ``train_planted.py`` (see ``planted_data.py``): 64x64 images whose label is
the shape of the one small object drawn in the bright target colour.

Model (PlantedViT, timm-style ViT): patch embedding Conv 3->D, 8 px patches -> 8x8 tokens,
a class token prepended by Concat, learned position embedding, DEPTH pre-norm blocks
``x + attn(norm1(x)); x + mlp(norm2(x))`` with HEADS heads and an explicit Softmax
attention, a final LayerNorm and a linear head on the class token. Input: unit preprocessing
(v/255), NCHW, the same sidecar as planted.onnx.

Outputs in models/planted_vit/ (TorchScript exporter, dynamic batch):
    planted_vit.onnx        opset 17: LayerNormalization nodes
    planted_vit_ln13.onnx   opset 13: LayerNorm decomposed (ReduceMean, Sub, Pow, Sqrt, Div)
    *.json sidecars, planted_vit_labels.txt (copy of planted_labels.txt)
The script prints held-out accuracy (2000 images, seed 1) and ORT vs torch differences.
Seeds: torch.manual_seed(0), torch.set_num_threads(1); EPOCHS=5 (about 5 minutes on one core).
SAVE_PT=path also saves the torch weights (for the pytorch-grad-cam comparison; not committed).
"""
from __future__ import annotations

import json
import math
import os
import shutil
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
from planted_data import make_dataset  # noqa: E402

OUT = os.path.join(HERE, "planted_vit")
N_TRAIN, EPOCHS, BATCH, LR = 16000, int(os.environ.get("EPOCHS", 5)), 64, 1e-3
DIM, DEPTH, HEADS, PATCH = 64, 4, 4, 8


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PlantedViT(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        grid = 64 // PATCH
        self.patch_embed = nn.Conv2d(3, DIM, PATCH, PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + 1, DIM) * 0.02)
        self.blocks = nn.Sequential(*[Block(DIM, HEADS) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, classes)

    def forward(self, x):
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(t))[:, 0])


def to_input(imgs_uint8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs_uint8).permute(0, 3, 1, 2).float().div_(255.0)


@torch.no_grad()
def accuracy(model, imgs, labels, bs=500) -> float:
    model.eval()
    pred = torch.cat([model(to_input(imgs[i:i + bs])).argmax(1) for i in range(0, len(imgs), bs)])
    return float((pred.numpy() == labels).mean())


def train() -> PlantedViT:
    torch.manual_seed(0)
    xtr, ytr = make_dataset(N_TRAIN, 0)[:2]
    model = PlantedViT()
    print("parameters:", sum(p.numel() for p in model.parameters()))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
    steps = EPOCHS * math.ceil(N_TRAIN / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(0)
    ytr_t = torch.from_numpy(ytr)
    t0 = time.time()
    for ep in range(EPOCHS):
        model.train()
        perm = torch.randperm(N_TRAIN, generator=g).numpy()
        tot, n = 0.0, 0
        for i in range(0, N_TRAIN, BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(to_input(xtr[idx])), ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            n += len(idx)
        print(f"epoch {ep + 1}/{EPOCHS}: train loss {tot / n:.4f}  ({time.time() - t0:.0f}s)", flush=True)
    return model.eval()


def export(model, stem: str, opset: int) -> str:
    path = os.path.join(OUT, stem + ".onnx")
    torch.onnx.export(model.eval(), (torch.zeros(2, 3, 64, 64),), path, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
                      opset_version=opset, do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    d = {"preprocess": "unit", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "scale": 255.0,
         "bgr": False, "layout": "NCHW", "labels": "planted_vit_labels.txt", "resize": "squash"}
    with open(os.path.join(OUT, stem + ".json"), "w") as f:
        f.write(json.dumps(d) + "\n")
    return path


def main() -> None:
    torch.set_num_threads(int(os.environ.get("THREADS", 1)))
    os.makedirs(OUT, exist_ok=True)
    model = train()
    xva, yva, _ = make_dataset(2000, 1)
    print(f"held-out accuracy (2000 images, seed 1): {accuracy(model, xva, yva):.4f}")
    h = np.load(os.path.join(HERE, "planted", "heldout.npz"))
    print(f"accuracy on models/planted/heldout.npz (50): {accuracy(model, h['images'], h['labels']):.4f}")
    if os.environ.get("SAVE_PT"):  # dev only (the pytorch-grad-cam comparison), never committed
        torch.save(model.state_dict(), os.environ["SAVE_PT"])
    shutil.copy(os.path.join(HERE, "planted", "planted_labels.txt"), os.path.join(OUT, "planted_vit_labels.txt"))
    x = to_input(xva[:64]).numpy()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    for stem, opset in (("planted_vit", 17), ("planted_vit_ln13", 13)):
        path = export(model, stem, opset)
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        diff = np.abs(s.run(None, {"image": x})[0] - ref).max()
        ops = sorted({n.op_type for n in onnx.load(path).graph.node})
        print(f"{stem}.onnx (opset {opset}): ORT vs torch max abs diff {diff:.2e}; "
              f"{os.path.getsize(path)} bytes; ops {ops}")
        assert diff < 1e-4


if __name__ == "__main__":
    main()
