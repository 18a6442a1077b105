"""Dev-only: export the small test models of tests/test_gradients_models.py (needs torch).

    pip install torch==2.13.0 onnxscript   # dev tools, never needed at run time
    python tests/data/gradients/make_models.py

For each architecture (ResNet-like, MobileNetV3-like, ViT-like) it writes four ONNX files:
{name}_{ts|dynamo}_{fixed|dynamic}.onnx (TorchScript exporter ``dynamo=False`` at opset 17 and
the dynamo exporter, fixed batch 2 or dynamic batch), and {name}.npz with the input ``x``, the
``seed`` (one-hot rows), ``logits``, and per tagged module ``act/<tag>`` and ``grad/<tag>``: the
module's output and the torch autograd gradient of sum(seed * logits) w.r.t. it.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH, CLASSES = 2, 10


def conv_bn(cin, cout, k=3, s=1, groups=1, act=None):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride, act=nn.ReLU()),
                                  conv_bn(cout, cout, 3, 1))
        self.down = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.down(x))


class ResNetLike(nn.Module):
    tags = ("stem.0", "stem", "block1", "block2")
    default = "block2"

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 8, 3, 1, act=nn.ReLU()), nn.MaxPool2d(3, 2, 1))
        self.block1 = BasicBlock(8, 8, 1)
        self.block2 = BasicBlock(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, CLASSES)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.fc2 = nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cexp, cout, stride, act, se):
        super().__init__()
        self.expand = conv_bn(cin, cexp, 1, act=act)
        self.dw = conv_bn(cexp, cexp, 3, stride, groups=cexp, act=act)
        self.se = SqueezeExcite(cexp) if se else nn.Identity()
        self.project = conv_bn(cexp, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


class MobileNetV3Like(nn.Module):
    tags = ("block1", "block1.se", "block2", "last")
    default = "last"

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 8, 3, 2, act=nn.Hardswish())
        self.block1 = InvertedResidual(8, 16, 8, 1, nn.Hardswish(), se=True)
        self.block2 = InvertedResidual(8, 24, 16, 2, nn.ReLU6(), se=False)
        self.last = conv_bn(16, 32, 1, act=nn.Hardswish())
        self.head = nn.Sequential(nn.Linear(32, 24), nn.Hardswish(), nn.Dropout(0.2),
                                  nn.Linear(24, CLASSES))

    def forward(self, x):
        x = self.last(self.block2(self.block1(self.stem(x))))
        return self.head(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


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


class ViTLike(nn.Module):
    tags = ("patch", "block", "norm")
    default = None

    def __init__(self, dim=32):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.1)
        self.block = Block(dim, 4)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, CLASSES)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        t = self.norm(self.block(t))
        return self.head(t[:, 0])


MODELS = {"resnet": ResNetLike, "mobilenetv3": MobileNetV3Like, "vit": ViTLike}


def randomise_bn(model):
    """Non-trivial running statistics so BatchNormalization is not the identity."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def reference(model, x, seed):
    acts = {}
    handles = [model.get_submodule(t).register_forward_hook(
        lambda m, i, o, t=t: acts.__setitem__(t, o)) for t in model.tags]
    logits = model(x)
    for a in acts.values():
        a.retain_grad()
    (logits * seed).sum().backward()
    for h in handles:
        h.remove()
    out = {"x": x.numpy(), "seed": seed.numpy(), "logits": logits.detach().numpy()}
    for t, a in acts.items():
        out[f"act/{t}"] = a.detach().numpy()
        out[f"grad/{t}"] = a.grad.numpy()
    out["default"] = np.array(model.default or "")
    return out


def export(model, x, path, dynamo, dynamic):
    kwargs = dict(input_names=["input"], output_names=["logits"])
    if dynamo:
        if dynamic:
            kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("N", min=1, max=64)}}
        torch.onnx.export(model, (x,), path, dynamo=True, external_data=False, **kwargs)
    else:
        if dynamic:
            kwargs["dynamic_axes"] = {"input": {0: "N"}, "logits": {0: "N"}}
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, **kwargs)


def main(names):
    for name in names:
        torch.manual_seed(0)  # each model reproducible on its own
        model = MODELS[name]()
        randomise_bn(model)
        model.eval()
        x = torch.randn(BATCH, 3, 32, 32)
        seed = torch.nn.functional.one_hot(torch.tensor([3, 7]), CLASSES).float()
        np.savez(os.path.join(HERE, f"{name}.npz"), **reference(model, x.clone(), seed))
        for dynamo in (False, True):
            for dynamic in (False, True):
                path = os.path.join(HERE, f"{name}_{'dynamo' if dynamo else 'ts'}_"
                                          f"{'dynamic' if dynamic else 'fixed'}.onnx")
                try:
                    with torch.no_grad():
                        export(model, x, path, dynamo, dynamic)
                    print("wrote", path, os.path.getsize(path))
                except Exception as exc:  # noqa: BLE001 - report and go on
                    print("FAILED", path, type(exc).__name__, str(exc)[:300])


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
