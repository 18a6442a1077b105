"""Make the vision-transformer reference data that tests/test_tokens.py checks against (dev-only).

Needs torch==2.13.0 (CPU), timm (``pip install --no-deps timm``, with huggingface_hub, pyyaml,
safetensors), pytorch-grad-cam (``pip install --no-deps grad-cam ttach``), onnx, onnxruntime,
opencv-python-headless. torchvision is NOT needed: timm imports it only for data helpers, and
pytorch-grad-cam only for preprocessing, so the names they import are stubbed below
(the CPU torch wheel has no torchvision).

    PYTHONPATH=. python tests/data/vit_tokens/make_reference.py [--planted-weights PATH]

Writes, next to this script, for each model NAME below: NAME.onnx (TorchScript exporter,
opset 17, dynamic batch, random weights, input "image" [N,3,64,64], output "logits") and
NAME.npz with
    x                        float32 [2,3,64,64]
    targets                  int64 [2]
    layers                   str [L]  torch module of each target layer
    layer_tensors            str [L]  the ONNX tensor holding it (found by value)
    reshape                  str [L]  "h,w,extra" pytorch-grad-cam's reshape_transform used
    cam/<layer>/<method>     float32 [2,64,64] pytorch-grad-cam's grayscale_cam with that
                             reshape_transform (methods gradcam, gradcam++, hirescam, xgradcam, layercam)
    rollout, attention_grad  (models with global attention) [B,h,w]: attention rollout and
                             Chefer et al.'s relevance computed here in torch from the attention
                             probabilities and their gradients (the target's logit), the read row
                             being the class token's (row 0), or the mean of all rows without one

Models:
    deit_distilled   timm VisionTransformerDistilled: class + distillation token (tokens 2+8x8)
    vit_meanpool     timm VisionTransformer, no class token, global average pool (tokens 8x8)
    swin             timm SwinTransformer, patch 4, window 4, two stages: NHWC maps 16x16, 8x8
    planted_vit      (with --planted-weights, the torch weights models/train_planted_vit.py saves
                     with SAVE_PT=...) the trained planted ViT: models/planted_vit/planted_vit.onnx,
                     not written again; NAME.npz only, on 4 held-out images
"""
from __future__ import annotations

import argparse
import importlib.machinery
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "hirescam": "HiResCAM", "xgradcam": "XGradCAM",
           "layercam": "LayerCAM"}


def stub_torchvision() -> None:
    """Empty stand-ins for the torchvision/matplotlib/sklearn names timm and pytorch-grad-cam
    import at module level (none is used here)."""

    class _Unused:
        def __init__(self, *a, **k):
            raise RuntimeError("stubbed dependency used")

        def __class_getitem__(cls, item):
            return cls

    class _Mode:
        NEAREST, BILINEAR, BICUBIC, BOX, HAMMING, LANCZOS, NEAREST_EXACT = range(7)

    class _Stub(types.ModuleType):
        def __getattr__(self, item):  # any other name: a class that refuses to be used
            if item.startswith("__"):
                raise AttributeError(item)
            return sys.modules.get(f"{self.__name__}.{item}", _Unused)

    for name, attrs in {
        "torchvision": {"__version__": "0.0"}, "torchvision.transforms": {"InterpolationMode": _Mode},
        "torchvision.transforms.functional": {"InterpolationMode": _Mode}, "torchvision.transforms.v2": {},
        "torchvision.ops": {}, "torchvision.ops.misc": {}, "torchvision.datasets": {},
        "matplotlib": {}, "matplotlib.pyplot": {}, "matplotlib.lines": {},
        "sklearn": {}, "sklearn.decomposition": {},
    }.items():
        if name not in sys.modules:
            try:
                __import__(name)
            except ImportError:
                mod = _Stub(name)
                mod.__dict__.update(attrs)
                mod.__path__ = []
                mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
                sys.modules[name] = mod


def timm_models():
    os.environ["TIMM_FUSED_ATTN"] = "0"  # an explicit Softmax in the graph, as older exports have
    import timm.layers
    import torch
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    timm.layers.set_fused_attn(False)
    torch.manual_seed(0)
    deit = VisionTransformerDistilled(img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                                      num_classes=5).eval()
    torch.manual_seed(1)
    meanpool = VisionTransformer(img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5,
                                 class_token=False, global_pool="avg").eval()
    torch.manual_seed(2)
    swin = SwinTransformer(img_size=64, patch_size=4, window_size=4, embed_dim=16, depths=(2, 2),
                           num_heads=(1, 2), num_classes=5).eval()
    for m in (deit, meanpool, swin):  # non-trivial LayerNorm affine and class/position tokens
        g = torch.Generator().manual_seed(3)
        for name, p in m.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.data = 0.5 + torch.rand(p.shape, generator=g)
            elif "token" in name or "pos_embed" in name:
                p.data = 0.5 * torch.randn(p.shape, generator=g)
    # (torch module, layers, reshape (h, w, extra) per layer or None for NHWC)
    return {
        "deit_distilled": (deit, ["blocks.1.norm1", "blocks.0"], [(8, 8, 2), (8, 8, 2)]),
        "vit_meanpool": (meanpool, ["blocks.1", "blocks.1.norm1"], [(8, 8, 0), (8, 8, 0)]),
        "swin": (swin, ["layers.1.blocks.1", "layers.0.blocks.1"], [None, None]),
    }


def reshape_transform(h, w, extra):
    """pytorch-grad-cam's ViT reshape_transform with the grid and the extra tokens."""
    def f(t):
        return t[:, extra:, :].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)
    return f


def nhwc_transform(t):
    """Swin's [N, h, w, C] block outputs to NCHW."""
    return t.permute(0, 3, 1, 2)


def export(model, path, dynamic=True):
    import torch
    torch.onnx.export(model, (torch.randn(2, 3, 64, 64),), path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}} if dynamic else None, opset_version=17,
                      do_constant_folding=True, dynamo=False)


def tensor_for_layer(onnx_path, x, activations):
    import onnx
    import onnxruntime as ort
    m = onnx.shape_inference.infer_shapes(onnx.load(onnx_path))
    have = {o.name for o in m.graph.output}
    for vi in m.graph.value_info:
        if vi.name not in have and vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            m.graph.output.append(vi)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(None, {"image": x})))
    found = {}
    for layer, act in activations.items():
        hits = [n for n, v in values.items() if v.shape == act.shape and np.allclose(v, act, rtol=1e-4, atol=1e-4)]
        assert hits, f"no ONNX tensor equals the output of {layer}"
        found[layer] = hits[-1]
        print(f"  {layer} -> {found[layer]}")
    return found


def attention_capture(model):
    """Hook every timm Attention so its probabilities are kept with their gradient."""
    import torch
    from timm.models.vision_transformer import Attention
    kept = []

    def forward(self, x, attn_mask=None, **_):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        attn.retain_grad()
        kept.append(attn)
        x = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(self.norm(x) if hasattr(self, "norm") else x))

    for m in model.modules():
        if isinstance(m, Attention):
            m.forward = types.MethodType(forward, m)
    return kept


def attention_maps(kept, grid):
    """Rollout (Abnar & Zuidema 2020) and Chefer et al. 2021's relevance from the kept attention
    [B, heads, T, T] and their gradients, in torch, for every image: [B, h, w] each."""
    import torch
    h, w, extra = grid
    T = kept[0].shape[-1]
    eye = torch.eye(T, dtype=torch.float64)
    roll, chef = [], []
    for b in range(kept[0].shape[0]):
        r, c = eye.clone(), eye.clone()
        for a in kept:
            A, G = a.detach()[b].double(), a.grad[b].double()
            m = 0.5 * A.mean(0) + 0.5 * eye
            r = (m / m.sum(-1, keepdim=True)) @ r
            c = c + (G * A).clamp(min=0).mean(0) @ c
        pick = (lambda R: R[0]) if extra else (lambda R: R.mean(0))
        roll.append(pick(r)[extra:].reshape(h, w).numpy())
        chef.append(pick(c)[extra:].reshape(h, w).numpy())
    return {"rollout": np.stack(roll).astype(np.float32), "attention_grad": np.stack(chef).astype(np.float32)}


def reference(name, model, layers, reshapes, x, targets, onnx_path, out_path):
    import pytorch_grad_cam as pgc
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    acts = {}
    hooks = [model.get_submodule(l).register_forward_hook(lambda m, i, o, l=l: acts.__setitem__(l, o.detach().numpy()))
             for l in layers]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    tensors = tensor_for_layer(onnx_path, x, acts)
    out = {"x": x, "targets": targets, "layers": np.array(layers), "layer_tensors": np.array([tensors[l] for l in layers]),
           "reshape": np.array([",".join(map(str, r)) if r else "nhwc" for r in reshapes])}
    for layer, r in zip(layers, reshapes):
        for method, cls in METHODS.items():
            with getattr(pgc, cls)(model=model, target_layers=[model.get_submodule(layer)],
                                   reshape_transform=reshape_transform(*r) if r else nhwc_transform) as cam:
                out[f"cam/{layer}/{method}"] = cam(torch.from_numpy(x), [ClassifierOutputTarget(int(t)) for t in targets]
                                                   ).astype(np.float32)
    kept = attention_capture(model)
    if kept is not None:
        xt = torch.from_numpy(x)
        logits = model(xt)
        if kept:
            logits[torch.arange(len(targets)), torch.from_numpy(targets)].sum().backward()
            out.update(attention_maps(kept, reshapes[0]))
    np.savez_compressed(out_path, **out)
    print("wrote", out_path, os.path.getsize(out_path))


def planted_vit(weights):
    import torch
    sys.path.insert(0, os.path.join(ROOT, "models"))
    import train_planted_vit as T

    model = T.PlantedViT()
    model.load_state_dict(torch.load(weights))
    model.eval()
    kept = []

    def forward(self, x):  # the same computation, keeping the attention with its gradient
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        if attn.requires_grad:
            attn.retain_grad()
            kept.append(attn)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

    for blk in model.blocks:
        blk.attn.forward = types.MethodType(forward, blk.attn)
    d = np.load(os.path.join(ROOT, "models", "planted", "heldout.npz"))
    x = T.to_input(d["images"][:4]).numpy()
    targets = d["labels"][:4].astype(np.int64)
    return model, x, targets, kept


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--planted-weights")
    args = ap.parse_args()
    stub_torchvision()
    import torch
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64).numpy()
    targets = np.array([1, 3], np.int64)
    for name, (model, layers, reshapes) in timm_models().items():
        path = os.path.join(HERE, name + ".onnx")
        export(model, path)
        print("wrote", path, os.path.getsize(path))
        reference(name, model, layers, reshapes, x, targets, path, os.path.join(HERE, name + ".npz"))
    if args.planted_weights:
        model, xp, tp, kept = planted_vit(args.planted_weights)
        onnx_path = os.path.join(ROOT, "models", "planted_vit", "planted_vit.onnx")
        layers = ["blocks.3.norm1", "blocks.2", "blocks.3"]
        reference_planted(model, layers, xp, tp, onnx_path, kept)


def reference_planted(model, layers, x, targets, onnx_path, kept):
    import pytorch_grad_cam as pgc
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    acts = {}
    hooks = [model.get_submodule(l).register_forward_hook(lambda m, i, o, l=l: acts.__setitem__(l, o.detach().numpy()))
             for l in layers]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    tensors = tensor_for_layer(onnx_path, x, acts)
    out = {"x": x, "targets": targets, "layers": np.array(layers), "layer_tensors": np.array([tensors[l] for l in layers]),
           "reshape": np.array(["8,8,1"] * len(layers))}
    for layer in layers:
        for method, cls in METHODS.items():
            with getattr(pgc, cls)(model=model, target_layers=[model.get_submodule(layer)],
                                   reshape_transform=reshape_transform(8, 8, 1)) as cam:
                out[f"cam/{layer}/{method}"] = cam(torch.from_numpy(x), [ClassifierOutputTarget(int(t)) for t in targets]
                                                   ).astype(np.float32)
    kept.clear()
    logits = model(torch.from_numpy(x))
    logits[torch.arange(len(targets)), torch.from_numpy(targets)].sum().backward()
    out.update(attention_maps(kept, (8, 8, 1)))
    path = os.path.join(HERE, "planted_vit.npz")
    np.savez_compressed(path, **out)
    print("wrote", path, os.path.getsize(path))


if __name__ == "__main__":
    main()
