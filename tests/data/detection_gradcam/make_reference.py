"""Make the per-detection Grad-CAM / EigenCAM reference that tests/test_detection_cams.py checks (dev-only).

What it writes, next to this script:

``yolov8_tiny.onnx``
    A real Ultralytics export (``YOLO(yaml).export(format="onnx", imgsz=320, opset=17)``) of the
    YOLOv8 architecture (``ultralytics/cfg/models/v8/yolov8.yaml``) at a tiny scale of our own,
    ``[depth 0.33, width 0.0625, max channels 256]`` with the 20 Pascal VOC classes (as
    models/detectors/make_ultralytics.py), seeded random weights (:func:`reinitialise`): 0.9 MB.
    Output ``output0 [1, 24, 2100]`` (cx, cy, w, h in input pixels, then 20 sigmoid class probabilities), candidates from P3/8 (40 x 40), P4/16 (20 x 20), P5/32 (10 x 10).
``yolov8_tiny.npz``
    pixels          uint8 [B, 3, 320, 320]   the images letterboxed by Ultralytics' own ``LetterBox``
                    (grey 114, centred), RGB; the model's input is ``x = pixels.astype(float32) / 255``
    candidates      int64 [B, L]             per image and level, the candidate explained (the
                    level's highest class probability among boxes of at least 8 x 8 px); classes
                    int64 [B, L] its class, scores float32 [B, L] its probability (torch)
    level_modules   str [L]                  the torch module of each level's neck map
                    (``model.15``, ``model.18``, ``model.21``: the Detect head's inputs)
    cam/<level>/<method>  float32 [B, 46, 46]  pytorch-grad-cam's ``grayscale_cam`` at that level's
                    neck map for a target ``output[4 + class, candidate]`` (the class probability:
                    what the model returns), methods gradcam, gradcam++, hirescam, xgradcam, layercam
    eigen/<level>/svd   EigenCAM (pytorch-grad-cam's class: SVD sign as LAPACK returns it)
    eigen/<level>/peak  EigenCAM with Seg-Eigen-CAM's sign correction (Chung & Ying 2025, eq. 13:
                    flip when |min| > |max|), pytorch-grad-cam's ``get_2d_projection_with_sign_correction``
                    in its own pipeline
    eigen/<level>/box   float32 [B, 46, 46]  eigen/<level>/peak renormalised inside the candidate's box as the YOLO
                    tutorial means it: ``scale_cam_image`` on the box (one image), zero outside, then
                    ``scale_cam_image`` again; box float32 [B, L, 4] (x0, y0, x1, y1, model pixels)
    stride          the maps above are stored at every 7th pixel, ``map[:, ::7, ::7]`` of the 320 x 320
                    maps (46 x 46): 7 is prime to the upsampling factors 8, 16, 32, so every phase of
                    the bilinear resize is checked while the file stays small
``resnetish_eigencam.npz``
    EigenCAM on a classifier: tests/data/gradcam_reference's ``resnetish`` (its torch model rebuilt
    by that folder's script, checked against its ONNX file's logits) on that folder's input ``x``:
    ``eigen/<layer>/svd`` and ``eigen/<layer>/peak`` float32 [B, 64, 64] for layers ``layer3`` and
    ``layer2`` (``layer_tensors``: the ONNX tensors, from ``resnetish.npz``)
``heads.npz``
    The other heads: the detector zoo's torch-built YOLOv5 ``Detect``, YOLOX raw head and DETR
    prediction heads (``models/detectors/make_heads.py``: the torch models rebuilt from that script,
    checked against its ONNX files), on its two images as it feeds them (``pixels`` uint8
    [2, 3, 320, 320]). Per head ``<h>``: ``<h>/candidates``, ``<h>/classes`` int64 [2, L] (per level,
    the score closest to 0.5, as a detection near the threshold; DETR: one "level"), ``<h>/layers`` str [L] (torch modules),
    ``<h>/cam/<level>/<method>`` float32 [2, 30, 30]: pytorch-grad-cam at the level's neck module
    (DETR: ``body.p5``) with a target that computes the decoder's score: ``output[a, 4] *
    output[a, 5 + c]`` (YOLOv5's ``conf``, YOLOX's ``obj * cls``), ``softmax(logits[q])[c]`` (DETR);
    every 11th pixel (11 is prime to 8, 16, 32)

Needs (none of it at run time or for the tests): torch 2.13 CPU, Ultralytics 8.4.190 installed with
``--no-deps``, pytorch-grad-cam 1.5.7 (``pip install --no-deps grad-cam ttach`` and scikit-learn,
which its ``svd_on_activations`` imports), opencv-python-headless. torchvision is not installable
here: a stand-in package on ``PYTHONPATH`` provides the names Ultralytics and pytorch-grad-cam
import (``torchvision.ops.nms`` as a greedy NMS in torch, ``torchvision.transforms`` and
``transforms.functional`` as inert placeholders, none used by the CAM methods or the export):

    PYTHONPATH=$PWD:/path/to/torchvision-standin YOLO_OFFLINE=1 python tests/data/detection_gradcam/make_reference.py

It can be run again; the seeds make the same model and the same references.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
IMAGES = ["chelsea.png", "astronaut.png", "rocket.jpg"]
SIZE = 320
STRIDE = 7  # stored maps: every 7th pixel (see the module docstring)
SCALE = [0.33, 0.0625, 256]  # depth, width, max channels: a 1.6 MB YOLOv8
LEVELS = {"P3": "model.15", "P4": "model.18", "P5": "model.21"}  # yolov8.yaml: Detect(P3, P4, P5) reads 15, 18, 21
METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "hirescam": "HiResCAM",
           "xgradcam": "XGradCAM", "layercam": "LayerCAM"}


def export_model(onnx_path: str):
    """The seeded tiny YOLOv8 exported by Ultralytics; returns the fused torch model (eval)."""
    import shutil

    import torch
    import yaml
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.utils import YAML

    base = os.path.join(os.path.dirname(ultralytics.__file__), "cfg", "models", "v8", "yolov8.yaml")
    with open(base) as f:
        cfg = yaml.safe_load(f)
    cfg["scales"] = {"t": SCALE}
    cfg["nc"] = 20
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "yolov8_tiny.yaml")  # no n/s/m/l/x in the name: the one scale 't' is used
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f)
        torch.manual_seed(0)
        yolo = YOLO(path)
        yolo.model.names = YAML.load(os.path.join(os.path.dirname(ultralytics.__file__), "cfg", "datasets",
                                                  "VOC.yaml"))["names"]
        reinitialise(yolo.model)
        out = yolo.export(format="onnx", imgsz=SIZE, opset=17, simplify=False)
        shutil.move(out, onnx_path)  # Ultralytics writes beside the yaml's name in the working directory
    model = yolo.model.fuse(verbose=False).eval()  # the export fuses Conv+BN too: the same weights
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def reinitialise(model) -> None:
    """Seeded random weights that keep the activations' scale: He-normal convolutions and random
    BatchNorm statistics (as tests/data/gradcam_reference does). With Ultralytics' own init the
    activations of a net this thin vanish (std 1e-9 at P5), and every candidate's class score is
    its bias. The class bias is set to -1.5 (Ultralytics' ``bias_init`` gives -8.8 to -11.5) so
    that some candidates pass the 0.25 threshold. The DFL's fixed ``arange(16)`` is left alone."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d) and mod.weight.requires_grad:
            fan_in = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            mod.weight.data = torch.randn(mod.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.weight.data = 0.5 + torch.rand(c, generator=g)
            mod.bias.data = 0.2 * torch.randn(c, generator=g)
            mod.running_mean.data = 0.1 * torch.randn(c, generator=g)
            mod.running_var.data = 0.5 + torch.rand(c, generator=g)
    head = model.model[-1]
    for branch in head.cv3:
        branch[-1].bias.data[:] = -1.5


def letterbox_images() -> np.ndarray:
    import cv2
    from ultralytics.data.augment import LetterBox

    box = LetterBox((SIZE, SIZE), auto=False, stride=32)
    batch = []
    for name in IMAGES:
        bgr = cv2.imread(os.path.join(ROOT, "models", "images", name))
        rgb = box(image=bgr)[..., ::-1]
        batch.append(rgb.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(batch))


class FirstOutput:
    """The Ultralytics model returning only its decoded predictions ``[B, 4 + C, A]``: in eval
    mode it returns ``(y, raw)``, and pytorch-grad-cam zips its targets with the model's output."""

    def __new__(cls, model):
        import torch

        class _Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m(x)[0]

        return _Wrap(model).eval()


class CandidateTarget:
    """pytorch-grad-cam target: the class probability of one candidate, ``output[4 + c, a]`` of the
    image's ``[4 + C, A]`` output (like ``ClassifierOutputTarget`` picks ``output[c]``)."""

    def __init__(self, candidate: int, cls: int):
        self.candidate, self.cls = int(candidate), int(cls)

    def __call__(self, output):
        return output[4 + self.cls, self.candidate]


def in_box(cam: np.ndarray, box) -> np.ndarray:
    """The YOLO tutorial's ``renormalize_cam_in_bounding_boxes`` for one box, with
    ``scale_cam_image`` given the box as one image (the tutorial passes the 2-D crop, which
    ``scale_cam_image`` iterates row by row: each row of the box is normalised on its own)."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    H, W = cam.shape
    x0, y0, x1, y1 = (int(v) for v in np.clip(box, 0, [W, H, W, H]))
    out = np.zeros(cam.shape, np.float32)
    out[y0:y1, x0:x1] = scale_cam_image(cam[None, y0:y1, x0:x1].copy())[0]
    return scale_cam_image(out[None])[0]


class SignedEigenCAM:
    """pytorch-grad-cam's EigenCAM with Seg-Eigen-CAM's sign correction (its own function)."""

    def __new__(cls, model, target_layers):
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

        class _Signed(pgc.EigenCAM):
            def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads,
                              eigen_smooth):
                return get_2d_projection_with_sign_correction(activations)

        return _Signed(model=model, target_layers=target_layers)


def classifier_eigencam() -> None:
    """EigenCAM references on tests/data/gradcam_reference's resnetish (see the module docstring)."""
    import importlib.util

    import pytorch_grad_cam as pgc
    import torch

    ref_dir = os.path.join(ROOT, "tests", "data", "gradcam_reference")
    spec = importlib.util.spec_from_file_location("gradcam_reference", os.path.join(ref_dir, "make_reference.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model, _ = mod.small_models()["resnetish"]
    old = np.load(os.path.join(ref_dir, "resnetish.npz"))
    xt = torch.from_numpy(old["x"])
    with torch.no_grad():
        gap = float(np.abs(model(xt).numpy() - old["logits"]).max())
    assert gap < 1e-4, f"the rebuilt resnetish is not the one in {ref_dir} (logits {gap:.2e} apart)"
    modules = dict(model.named_modules())
    out = {"x": old["x"], "layers": old["layers"], "layer_tensors": old["layer_tensors"]}
    for layer in old["layers"]:
        with pgc.EigenCAM(model=model, target_layers=[modules[str(layer)]]) as cam:
            out[f"eigen/{layer}/svd"] = np.asarray(cam(input_tensor=xt, targets=None), np.float32)
        with SignedEigenCAM(model, [modules[str(layer)]]) as cam:
            out[f"eigen/{layer}/peak"] = np.asarray(cam(input_tensor=xt, targets=None), np.float32)
    path = os.path.join(HERE, "resnetish_eigencam.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path} ({os.path.getsize(path) // 1024} KB)")


def main() -> None:
    import onnxruntime as ort
    import pytorch_grad_cam as pgc
    import torch

    torch.set_num_threads(2)
    onnx_path = os.path.join(HERE, "yolov8_tiny.onnx")
    model = export_model(onnx_path)
    print(f"exported {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.2f} MB)")
    wrapped = FirstOutput(model)
    pixels = letterbox_images()
    x = pixels.astype(np.float32) / 255
    xt = torch.from_numpy(x)
    with torch.no_grad():
        output = wrapped(xt).numpy()
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    onnx_out = np.concatenate([sess.run(None, {"images": x[i:i + 1]})[0] for i in range(len(x))])
    gap = float(np.abs(onnx_out - output).max())
    print(f"torch vs onnx output: max gap {gap:.2e}")
    assert gap < 1e-3, gap

    # candidates per level: anchors are P3 (40*40) then P4 (20*20) then P5 (10*10)
    sizes = [(SIZE // s) ** 2 for s in (8, 16, 32)]
    starts = np.cumsum([0] + sizes)
    probs = output[:, 4:, :]
    cands = np.zeros((len(x), 3), np.int64)
    classes = np.zeros((len(x), 3), np.int64)
    boxes = np.zeros((len(x), 3, 4), np.float32)
    for b in range(len(x)):
        for l in range(3):
            part = probs[b, :, starts[l]:starts[l + 1]]
            wh = output[b, 2:4, starts[l]:starts[l + 1]].min(axis=0)
            part = np.where(wh >= 8, part, -1)  # a box of at least 8 x 8 px, for the in-box maps
            c, a = np.unravel_index(np.argmax(part), part.shape)
            cands[b, l], classes[b, l] = starts[l] + a, c
            cx, cy, w, h = output[b, :4, starts[l] + a]
            boxes[b, l] = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    print("candidates", cands.tolist(), "classes", classes.tolist())

    modules = dict(wrapped.m.named_modules())
    scores = probs[np.arange(len(x))[:, None], classes, cands].astype(np.float32)
    out = {"pixels": pixels, "candidates": cands, "classes": classes, "scores": scores, "box": boxes,
           "levels": np.array(list(LEVELS)), "level_modules": np.array(list(LEVELS.values()))}
    for l, (level, module) in enumerate(LEVELS.items()):
        layer = modules[module]
        targets = [CandidateTarget(cands[b, l], classes[b, l]) for b in range(len(x))]
        for method, cls in METHODS.items():
            with getattr(pgc, cls)(model=wrapped, target_layers=[layer]) as cam:
                grey = np.asarray(cam(input_tensor=xt, targets=targets), np.float32)
            flat = [b for b in range(len(x)) if grey[b].max() < 0.5]
            assert method != "gradcam" or not flat, f"{level} gradcam: an all-zero map on images {flat}"
            if flat:  # no positive weighted activation (Grad-CAM++'s weights can all vanish): kept as it is
                print(f"  {level} {method}: all-zero map on images {flat}")
            out[f"cam/{level}/{method}"] = grey
        with pgc.EigenCAM(model=wrapped, target_layers=[layer]) as cam:
            out[f"eigen/{level}/svd"] = np.asarray(cam(input_tensor=xt, targets=None), np.float32)

        with SignedEigenCAM(wrapped, [layer]) as cam:
            peak = np.asarray(cam(input_tensor=xt, targets=None), np.float32)
        out[f"eigen/{level}/peak"] = peak
        out[f"eigen/{level}/box"] = np.stack([in_box(peak[b], boxes[b, l]) for b in range(len(x))])
        flips = [bool(np.abs(out[f"eigen/{level}/svd"][b] - peak[b]).max() > 1e-6) for b in range(len(x))]
        print(f"{level} ({module}): maps made; LAPACK's sign differs from the peak rule on images {flips}")
    out = {k: v[:, ::STRIDE, ::STRIDE].copy() if k.startswith(("cam/", "eigen/")) else v for k, v in out.items()}
    path = os.path.join(HERE, "yolov8_tiny.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path} ({os.path.getsize(path) // 1024} KB)")
    classifier_eigencam()


HEADS = {"yolov5s_head": ["body.stem", "body.p4", "body.p5"], "yolox_raw": ["body.stem", "body.p4", "body.p5"],
         "detr_head": ["body.p5"]}
HEAD_STRIDE = 11


class HeadScore:
    """pytorch-grad-cam target: candidate ``a``'s score for class ``c`` as the head's decoder computes it."""

    def __init__(self, head: str, candidate: int, cls: int):
        self.head, self.a, self.c = head, int(candidate), int(cls)

    def __call__(self, output):
        import torch

        if self.head == "detr_head":
            return torch.softmax(output[self.a], -1)[self.c]
        return output[self.a, 4] * output[self.a, 5 + self.c]


def heads_reference() -> None:
    """The references of ``heads.npz`` (see the module docstring)."""
    import importlib.util

    import onnxruntime as ort
    import pytorch_grad_cam as pgc
    import torch

    script = os.path.join(ROOT, "models", "detectors", "make_heads.py")
    spec = importlib.util.spec_from_file_location("make_heads", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    built = mod.build()
    pixels = np.stack([mod.letterbox(im).transpose(2, 0, 1) for im in mod.REF_IMAGES])
    x = pixels.astype(np.float32) / 255
    xt = torch.from_numpy(x)
    out = {"pixels": pixels}
    for name, layers in HEADS.items():
        cls, out_names = built[name]
        torch.manual_seed(0)
        model = cls().eval()
        mod.tune(model, torch)
        sess = ort.InferenceSession(os.path.join(ROOT, "models", "detectors", f"{name}.onnx"),
                                    providers=["CPUExecutionProvider"])
        with torch.no_grad():
            ours = model(xt)
        ours = ours[0] if isinstance(ours, tuple) else ours
        theirs = np.concatenate([sess.run([out_names[0]], {"images": x[i:i + 1]})[0] for i in range(len(x))])
        gap = float((np.abs(ours.numpy() - theirs) / np.maximum(1.0, np.abs(theirs))).max())
        assert gap < 1e-4, f"{name}: the rebuilt torch model is not the ONNX file's (relative gap {gap:.2e})"
        wrapped = FirstOutput(model) if name == "detr_head" else model
        if name == "detr_head":
            p = torch.softmax(ours, -1)[..., :-1].numpy()
            starts = [0, p.shape[1]]
        else:
            p = (ours[..., 4:5] * ours[..., 5:]).numpy()
            cells = [(320 // s) ** 2 * (3 if name == "yolov5s_head" else 1) for s in (8, 16, 32)]
            starts = list(np.cumsum([0] + cells))
        cands = np.zeros((len(x), len(layers)), np.int64)
        classes = np.zeros((len(x), len(layers)), np.int64)
        for b in range(len(x)):
            for l in range(len(layers)):  # the score closest to 0.5: these heads' best are saturated (0.97
                part = p[b, starts[l]:starts[l + 1]]  # to 0.99), whose maps are mostly all zero
                a, c = np.unravel_index(np.argmin(np.abs(part - 0.5)), part.shape)
                cands[b, l], classes[b, l] = starts[l] + a, c
        out[f"{name}/candidates"], out[f"{name}/classes"] = cands, classes
        out[f"{name}/layers"] = np.array(layers)
        modules = dict(model.named_modules())
        for l, layer in enumerate(layers):
            targets = [HeadScore(name, cands[b, l], classes[b, l]) for b in range(len(x))]
            for method, cls_name in METHODS.items():
                with getattr(pgc, cls_name)(model=wrapped, target_layers=[modules[layer]]) as cam:
                    grey = np.asarray(cam(input_tensor=xt, targets=targets), np.float32)
                out[f"{name}/cam/{layer}/{method}"] = grey[:, ::HEAD_STRIDE, ::HEAD_STRIDE].copy()
        print(f"{name}: candidates {cands.tolist()} classes {classes.tolist()}")
    path = os.path.join(HERE, "heads.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path} ({os.path.getsize(path) // 1024} KB)")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["heads"]:
        heads_reference()
    else:
        main()
        heads_reference()
