"""Rebuild the conformance zoo that tests/test_zoo.py checks (dev-only; needs torch).

    pip install torch==2.13.0                      # the CPU wheel
    pip install --no-deps timm grad-cam ttach onnxscript
    pip install onnx onnxruntime opencv-python-headless scipy pillow pyyaml safetensors huggingface_hub
    python tests/data/zoo/make_zoo.py             # ~3 minutes on two cores

Seven architectures from timm (ResNet, MobileNetV3 with hard-swish, EfficientNet, RegNet,
DenseNet, ConvNeXt with its channels-last LayerNorm and MLP) and a torchvision-style VGG
(flatten + fully connected head, no global pooling) are built at narrow widths with random
weights (nothing is downloaded), plus a vendor-style graph written the way TensorFlow
converters write it (NHWC input and NHWC feature maps, every conv between two Transposes,
``.float()`` Casts, batch norm as a per-channel Mul/Add on the last axis, the global pooling a
mean over axes 1, 2: what the Yahoo open_nsfw torch export does). Each is exported several
ways (:data:`VARIANTS`): the TorchScript exporter at opset 13 and 17, the dynamo exporter
(opset 18) in contiguous and channels_last memory format, an NHWC-input wrapper, float16 and
uint8 inputs, and a fixed batch of 1; the vendor graph at opset 9 and 17.

Every variant computes the same function of the same model-space batch ``x`` (pixels
``(u - 128) / 128`` of two images, exact in float16; the uint8 wrapper takes ``u`` and does
that division itself), so one set of reference maps per family serves all of its files:
pytorch-grad-cam's ``GradCAM`` (``ClassifierOutputTarget``; for NHWC maps a
``reshape_transform`` moving channels first) at three depths, the first being the map the
classifier's global pooling reads (the default layer blackbox-cam must pick). The generator
checks that pytorch-grad-cam on each input wrapper gives the family's maps (1e-5), and that
ONNX Runtime's logits equal torch's, before writing anything.

Writes next to this script:
  <family>_<variant>.onnx   input "image", output "logits" (10 classes)
  <family>.npz              x [2,3,64,64] model space, u [2,64,64,3] uint8, targets [2],
                            logits [2,10], cam/<module> [2,64,64] float32 for each depth
  zoo.json                  per file: family, variant, input dtype and layout, batch, and per
                            depth the torch module, its layout, and the ONNX tensors holding
                            its output (found by value: every intermediate tensor is exposed and
                            those equal to the module's output, 1e-5, are listed, its own first:
                            :func:`module_tensor`)
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
IMAGES = os.path.join(ROOT, "models", "images")
SIZE, CLASSES = 64, 10


# --------------------------------------------------------------------------- stubs

class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        sub = _Meta(name, (cls,), {})  # a distinct stand-in per name (enums are dict keys)
        setattr(cls, name, sub)
        return sub


class _Unused(metaclass=_Meta):
    def __init__(self, *a, **k):
        raise RuntimeError("stubbed dependency used")


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        sub = _Meta(name, (_Unused,), {})
        setattr(self, name, sub)
        return sub


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """torchvision, matplotlib and scikit-learn: timm and pytorch-grad-cam import them at module
    level for data loading, plotting and methods the zoo never uses (torchvision has no CPU
    wheel that fits torch==2.13.0)."""

    roots = ("torchvision", "matplotlib", "sklearn")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = _StubModule(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module):
        pass


def install_stubs() -> None:
    sys.meta_path.insert(0, _StubFinder())


# --------------------------------------------------------------------------- the families

def resnet():
    from timm.models.resnet import BasicBlock, ResNet
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=CLASSES, stem_width=8, channels=(8, 16, 24, 32))


def mobilenetv3():
    from functools import partial

    from timm.layers import get_act_layer
    from timm.models._efficientnet_blocks import SqueezeExcite
    from timm.models._efficientnet_builder import decode_arch_def, round_channels
    from timm.models.mobilenetv3 import MobileNetV3
    from torch import nn
    arch = [["ds_r1_k3_s2_e1_c8_se0.25_nre"], ["ir_r1_k3_s2_e4.5_c12_nre", "ir_r1_k3_s1_e3.67_c12_nre"],
            ["ir_r1_k5_s2_e4_c16_se0.25"], ["ir_r1_k5_s1_e3_c24_se0.25"], ["cn_r1_k1_s1_c48"]]
    se = partial(SqueezeExcite, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU, rd_round_fn=round_channels)
    return MobileNetV3(decode_arch_def(arch), num_classes=CLASSES, stem_size=8, num_features=64,
                       act_layer=get_act_layer("hard_swish"), se_layer=se, head_bias=False)


def efficientnet():
    from timm.layers import get_act_layer
    from timm.models._efficientnet_builder import decode_arch_def
    from timm.models.efficientnet import EfficientNet
    arch = [["ds_r1_k3_s1_e1_c8_se0.25"], ["ir_r1_k3_s2_e6_c12_se0.25"], ["ir_r1_k5_s2_e6_c16_se0.25"],
            ["ir_r1_k3_s2_e6_c24_se0.25"], ["ir_r1_k5_s2_e6_c32_se0.25"]]
    return EfficientNet(decode_arch_def(arch), num_classes=CLASSES, stem_size=8, num_features=64,
                        act_layer=get_act_layer("swish"))


def regnet():
    from timm.models.regnet import RegNet, RegNetCfg
    return RegNet(RegNetCfg(depth=4, w0=8, wa=12.0, wm=1.5, group_size=8, stem_width=8, se_ratio=0.25),
                  num_classes=CLASSES)


def densenet():
    from timm.models.densenet import DenseNet
    return DenseNet(growth_rate=8, block_config=(1, 2, 2, 1), num_classes=CLASSES, bn_size=2)


def convnext():
    from timm.models.convnext import ConvNeXt
    return ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=CLASSES, ls_init_value=0.5,
                    conv_mlp=False)


def vgg():
    import torch
    from torch import nn

    class VGG(nn.Module):
        """torchvision's VGG layout: conv/ReLU/max-pool features, an adaptive average pool
        (the identity at this size), flatten and a fully connected classifier."""

        def __init__(self, cfg=(8, "M", 16, "M", 24, 24, "M", 32, 32, "M")):
            super().__init__()
            layers, cin = [], 3
            for v in cfg:
                layers += [nn.MaxPool2d(2)] if v == "M" else [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v if v != "M" else cin
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
            self.classifier = nn.Sequential(nn.Linear(cin * 16, 32), nn.ReLU(), nn.Dropout(),
                                            nn.Linear(32, CLASSES))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return VGG()


def vendor():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class VendorNHWC(nn.Module):
        """A TensorFlow habit written in torch (the Yahoo open_nsfw torch export): NHWC input
        and feature maps, each conv between two permutes with TF 'SAME' padding by Pad, batch
        norm as a per-channel Mul/Add on the last axis, ``.float()`` Casts as converters emit
        them, a residual add, the global pooling a mean over axes 1, 2, and a Softmax."""

        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList([nn.Conv2d(3, 8, 3, 2), nn.Conv2d(8, 16, 3, 2), nn.Conv2d(16, 16, 3, 1),
                                        nn.Conv2d(16, 24, 3, 2)])
            g = torch.Generator().manual_seed(5)
            for i, c in enumerate((8, 16, 16, 24)):
                self.register_buffer(f"scale{i}", 0.5 + torch.rand(c, generator=g))
                self.register_buffer(f"shift{i}", 0.2 * torch.randn(c, generator=g))
            self.early, self.mid, self.feat = nn.Identity(), nn.Identity(), nn.Identity()
            self.fc = nn.Linear(24, CLASSES)

        def conv(self, x, i, tap=None):
            x = x.permute(0, 3, 1, 2).float()
            x = F.pad(x, (0, 1, 0, 1) if self.convs[i].stride[0] == 2 else (1, 1, 1, 1))
            x = self.convs[i](x)
            x = tap(x) if tap is not None else x
            x = x.permute(0, 2, 3, 1).float()
            return torch.relu(x * getattr(self, f"scale{i}") + getattr(self, f"shift{i}")).float()

        def forward(self, x):
            x = self.conv(self.conv(x.float(), 0), 1, self.early)
            x = self.mid(torch.relu(x + self.conv(x, 2)).float())
            x = self.feat(self.conv(x, 3))
            return torch.softmax(self.fc(x.mean(dim=(1, 2)).float()), dim=1)

    return VendorNHWC()


#: family -> (builder, input layout, [torch modules at three depths; the first is the map the
#: global pooling (or the flatten head) reads], modules whose output is NHWC)
FAMILIES = {
    "resnet": (resnet, "NCHW", ["layer4", "layer3", "layer1"], ()),
    "mobilenetv3": (mobilenetv3, "NCHW", ["blocks", "blocks.3", "blocks.1"], ()),
    "efficientnet": (efficientnet, "NCHW", ["bn2", "blocks.3", "blocks.1"], ()),
    "regnet": (regnet, "NCHW", ["s4", "s3", "s2"], ()),
    "densenet": (densenet, "NCHW", ["features.norm5", "features.denseblock3", "features.transition1"], ()),
    "convnext": (convnext, "NCHW", ["stages.3", "stages.2.blocks.0.mlp", "stages.1"], ("stages.2.blocks.0.mlp",)),
    "vgg": (vgg, "NCHW", ["features", "features.12", "features.4"], ()),
    "vendor": (vendor, "NHWC", ["feat", "mid", "early"], ("feat", "mid")),
}

#: variant -> exporter settings. ``wrap``: an input wrapper (NHWC input, float16, uint8).
VARIANTS = {
    "ts13": dict(opset=13),
    "ts17": dict(opset=17),
    "dynamo18": dict(dynamo=True),
    "chlast": dict(dynamo=True, channels_last=True),
    "nhwc": dict(opset=17, wrap="nhwc"),
    "fp16": dict(opset=17, wrap="float16"),
    "uint8": dict(opset=17, wrap="uint8"),
    "b1": dict(opset=17, batch=1),
}
VENDOR_VARIANTS = {"opset9": dict(opset=9), "opset17": dict(opset=17)}


def wrapped(model, wrap):
    """The model behind an input wrapper: NHWC input (a TF habit), float16 or uint8 input."""
    from torch import nn

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            if wrap == "nhwc":
                x = x.permute(0, 3, 1, 2)
            elif wrap == "float16":
                x = x.float()
            elif wrap == "uint8":
                x = (x.float() - 128.0) / 128.0
            return self.model(x)

    return Wrapper().eval() if wrap else model


def variant_input(x: np.ndarray, u: np.ndarray, wrap: str | None, layout: str) -> np.ndarray:
    """The batch a variant's file takes for model-space ``x`` (NCHW float32)."""
    if wrap == "uint8":
        return u.transpose(0, 3, 1, 2).copy()
    if wrap == "float16":
        return x.astype(np.float16)
    if wrap == "nhwc" or layout == "NHWC":
        return x.transpose(0, 2, 3, 1).copy()
    return x


# --------------------------------------------------------------------------- helpers

def load_images() -> tuple[np.ndarray, np.ndarray]:
    """Two photos at 64x64: ``u`` uint8 [2,64,64,3] and ``x = (u - 128) / 128`` NCHW float32."""
    from PIL import Image

    u = np.stack([np.asarray(Image.open(os.path.join(IMAGES, n)).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))
                  for n in ("chelsea.png", "astronaut.png")])
    return u, ((u.astype(np.float32) - 128.0) / 128.0).transpose(0, 3, 1, 2).copy()


def randomise(model, seed: int):
    """Seeded weights, and batch norm statistics that make BatchNormalization no identity."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed + 100)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = 0.2 * torch.randn(c, generator=g)
            m.running_mean.data = 0.1 * torch.randn(c, generator=g)
            m.running_var.data = 0.5 + torch.rand(c, generator=g)
    return model.eval()


def export(model, xin: np.ndarray, path: str, *, opset=17, dynamo=False, channels_last=False, batch=None,
           wrap=None) -> None:
    import torch

    model = wrapped(model, wrap)
    xt = torch.from_numpy(xin[:batch] if batch else xin)
    kw = dict(input_names=["image"], output_names=["logits"])
    if channels_last:
        model, xt = model.to(memory_format=torch.channels_last), xt.contiguous(memory_format=torch.channels_last)
    if dynamo:
        if not batch:
            kw["dynamic_shapes"] = {"x": {0: torch.export.Dim("N", min=1, max=64)}}
        torch.onnx.export(model, (xt,), path, dynamo=True, external_data=False, verbose=False, **kw)
    else:
        if not batch:
            kw["dynamic_axes"] = {"image": {0: "N"}, "logits": {0: "N"}}
        torch.onnx.export(model, (xt,), path, dynamo=False, opset_version=opset, do_constant_folding=True, **kw)
    if channels_last:
        model.to(memory_format=torch.contiguous_format)


def onnx_values(path: str, xin: np.ndarray) -> dict[str, np.ndarray]:
    """Every float tensor of the ONNX graph at input ``xin``."""
    import onnx
    import onnxruntime as ort

    m = onnx.shape_inference.infer_shapes(onnx.load(path))
    have = {o.name for o in m.graph.output}
    for vi in m.graph.value_info:
        if vi.name not in have and vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            m.graph.output.append(vi)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"image": xin})))


def module_tensor(path: str, hits: list[str]) -> list[str]:
    """``hits`` (tensors equal to a module's output, in graph order) with the module's own
    output first: from the first hit, along the chain of hits each made by the previous one's
    only consumer (a Relu of a non-negative sum, a Cast, an identity pool: equal values, the
    module's output at the end); a hit made from a tensor that has other consumers too (a
    one-input Concat in a DenseNet block) is a copy that carries only part of the gradient."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    users: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            users.setdefault(i, []).append(node)
    best = hits[0]
    while len(users.get(best, [])) == 1 and users[best][0].output[0] in hits:
        best = users[best][0].output[0]
    return [best] + [h for h in hits if h != best]


def gradcam(model, module: str, xin, targets, nhwc_layer: bool, nhwc_input: bool) -> np.ndarray:
    import pytorch_grad_cam as pgc
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = pgc.GradCAM(model=model, target_layers=[model.get_submodule(module)],
                      reshape_transform=(lambda t: t.permute(0, 3, 1, 2)) if nhwc_layer else None)
    if nhwc_input:  # pytorch-grad-cam reads the map size from the last two input dims
        cam.get_target_width_height = lambda t: (t.size(2), t.size(1))
    with cam:
        out = cam(input_tensor=torch.from_numpy(xin), targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return np.asarray(out, np.float32)


def module_outputs(model, modules, xin) -> dict[str, np.ndarray]:
    import torch

    acts = {}
    hooks = [model.get_submodule(m).register_forward_hook(
        lambda mod, i, o, m=m: acts.__setitem__(m, o.detach().numpy().copy())) for m in modules]
    with torch.no_grad():
        model(torch.from_numpy(xin))
    for h in hooks:
        h.remove()
    return acts


# --------------------------------------------------------------------------- the zoo

def make_family(family: str, seed: int, u: np.ndarray, x: np.ndarray, manifest: dict) -> None:
    import torch

    build, layout, modules, nhwc_modules = FAMILIES[family]
    torch.manual_seed(seed)  # the initial weights: each family reproducible on its own
    model = randomise(build(), seed)
    base_in = variant_input(x, u, None, layout)
    with torch.no_grad():
        logits = model(torch.from_numpy(base_in)).numpy()
    # the top class of the first image and the runner-up of the second, or the next class in
    # score order while a depth's map is all zero (random weights can silence a class there)
    order = np.argsort(-logits, axis=1)
    targets = np.array([next(c for c in order[i, i:] if all(
        gradcam(model, m, base_in[i:i + 1], [c], m in nhwc_modules, layout == "NHWC").max() > 0.5
        for m in modules)) for i in range(len(x))], np.int64)
    ref = {"x": x, "u": u, "targets": targets, "logits": logits.astype(np.float32)}
    for m in modules:
        ref[f"cam/{m}"] = gradcam(model, m, base_in, targets, m in nhwc_modules, layout == "NHWC")
    np.savez_compressed(os.path.join(HERE, f"{family}.npz"), **ref)

    variants = VENDOR_VARIANTS if family == "vendor" else VARIANTS
    for variant, opts in variants.items():
        name = f"{family}_{variant}"
        path = os.path.join(HERE, f"{name}.onnx")
        wrap = opts.get("wrap")
        xin = variant_input(x, u, wrap, layout)
        export(model, xin, path, **opts)
        n = opts.get("batch") or len(x)
        values = onnx_values(path, xin[:n])
        err = np.abs(values["logits"] - logits[:n]).max()
        assert err < 1e-4, f"{name}: ONNX logits differ from torch's by {err}"
        if wrap:  # the wrapper computes the same maps as the family's model
            got = gradcam(wrapped(model, wrap), "model." + modules[0], xin, targets, modules[0] in nhwc_modules,
                          wrap == "nhwc")
            assert np.abs(got - ref[f"cam/{modules[0]}"]).max() < 1e-5, f"{name}: wrapper changes the map"
        acts = module_outputs(model, modules, base_in[:n])
        layers = []
        for k, m in enumerate(modules):
            hits = [t for t, v in values.items() if t != "logits" and v.shape == acts[m].shape
                    and np.allclose(v, acts[m], rtol=1e-5, atol=1e-5)]
            assert hits, f"{name}: no ONNX tensor equals the output of {m}"
            layers.append({"module": m, "layout": "NHWC" if m in nhwc_modules else "NCHW",
                           "tensors": module_tensor(path, hits),
                           "default": k == 0})
        manifest[name] = {"family": family, "variant": variant, "file": f"{name}.onnx",
                          "input": {"uint8": "uint8", "float16": "float16"}.get(wrap, "float32"),
                          "layout": "NHWC" if wrap == "nhwc" or layout == "NHWC" else "NCHW",
                          "batch": opts.get("batch"), "exporter": "dynamo" if opts.get("dynamo") else "torchscript",
                          "opset": opts.get("opset", 18), "layers": layers}
        print(f"  {name}: {os.path.getsize(path) // 1024} KB, logits err {err:.1e}, "
              + ", ".join(f"{l['module']} -> {l['tensors'][0]}" for l in layers), flush=True)


def main(families=None) -> None:
    import logging
    import warnings

    install_stubs()
    import torch

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    u, x = load_images()
    path = os.path.join(HERE, "zoo.json")
    manifest = json.load(open(path)) if families and os.path.exists(path) else {}
    for seed, family in enumerate(FAMILIES):
        if families and family not in families:
            continue
        print(family, flush=True)
        make_family(family, seed, u, x, manifest)
    with open(path, "w") as f:
        json.dump(dict(sorted(manifest.items())), f, indent=1)
    total = sum(os.path.getsize(os.path.join(HERE, n)) for n in os.listdir(HERE) if n.endswith((".onnx", ".npz")))
    print(f"wrote {len(manifest)} models, {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:] or None)
