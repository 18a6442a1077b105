"""Reference data for PaddleOCR's text direction classifier with its own ``preprocess_fn`` (dev-only).

The model (``models/ppocr_cls/ppocr_cls.onnx``) is ``ch_ppocr_mobile_v2.0_cls_infer.onnx`` from the
``rapidocr_onnxruntime==1.4.4`` wheel (Apache-2.0, PaddleOCR's export); its pipeline is a Python
function only (fit height 48, width up to 192, [-1, 1], pad right with 0 after normalising).
Three steps, each writing next to this script into ``ppocr/``:

``images`` (any Python with Pillow): text lines rendered with Pillow's DejaVu fonts from real text
    (the opening sentences of Darwin's *On the Origin of Species*, 1859, public domain), dark on
    light and light on dark, short (``Beagle``: under 4:1, padded right by the vendor) and long
    (over 4:1, squashed to 192 wide), each
    also rotated 180 degrees (``*_180.png``): the classifier's two classes.

``vendor WHEEL_DIR`` (a venv of its own: the wheel needs plain ``onnxruntime``, which must never
    sit beside ``onnxruntime-gpu``)::

        python -m venv /tmp/vendor-rapidocr
        /tmp/vendor-rapidocr/bin/pip install onnxruntime opencv-python-headless pyyaml numpy pillow pyclipper shapely six tqdm
        pip download --no-deps rapidocr_onnxruntime==1.4.4 -d /tmp/rapidwheel
        /tmp/vendor-rapidocr/bin/pip install --no-deps /tmp/rapidwheel/rapidocr_onnxruntime-1.4.4-py3-none-any.whl
        /tmp/vendor-rapidocr/bin/python tests/data/vendors/make_ppocr.py vendor

    runs the vendor's own ``TextClassifier`` (its ``resize_norm_img``, its ONNX session on the
    wheel's own copy of the model, its ``cv2.imread``) and writes ``expected_ppocr_cls.csv``
    (``image,class,probability``: both classes' probabilities from the vendor's session) and
    ``vendor_labels.txt`` (the vendor's own ``cls_res`` label and score per image, for the record).

``gradcam`` (the dev environment: torch CPU, ``pip install onnx2torch grad-cam --no-deps`` with
    their light deps, and a torchvision stand-in on ``PYTHONPATH`` when torchvision is not
    installed: a ``torchvision`` package whose ``transforms`` and ``ops`` import (pytorch-grad-cam
    imports ``transforms``, onnx2torch ``ops.roi_align`` at package import; neither is called here))::

        PYTHONPATH=$PWD:<torchvision stand-in> python tests/data/vendors/make_ppocr.py gradcam

    converts the ONNX file to torch with ``onnx2torch`` (its ``Constant`` weights moved to
    initializers first, which onnx2torch needs), feeds it the vendor function's output
    for each image and writes pytorch-grad-cam's ``GradCAM`` map at the last feature map before
    pooling for the vendor's top-1 class (``ClassifierOutputTarget``, on the Softmax output the
    graph ends in) into ``gradcam_reference.npz`` (key = image name, a [48, 192] map at the
    model input), so the tests need no torch.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "ppocr"
ROOT = Path(__file__).resolve().parents[3]
MODEL = ROOT / "models" / "ppocr_cls" / "ppocr_cls.onnx"
FONTS = "/usr/share/fonts/truetype/dejavu"
TEXT = ["When on board H.M.S. Beagle, as naturalist,",
        "I was much struck with certain facts",
        "in the distribution of the inhabitants",
        "of South America",
        "and in the geological relations",
        "Origin of Species",
        "Beagle",
        "Darwin, 1859"]
STYLES = [("DejaVuSans.ttf", 28, (20, 20, 20), (250, 250, 245)),
          ("DejaVuSerif.ttf", 22, (30, 30, 90), (235, 235, 225)),
          ("DejaVuSansMono.ttf", 20, (10, 10, 10), (255, 255, 255)),
          ("DejaVuSans-Bold.ttf", 34, (240, 240, 240), (40, 60, 80)),
          ("DejaVuSerif-Bold.ttf", 26, (60, 20, 20), (245, 240, 220)),
          ("DejaVuSansCondensed.ttf", 30, (0, 0, 0), (210, 220, 230)),
          ("DejaVuSerif.ttf", 30, (20, 20, 20), (250, 250, 250)),
          ("DejaVuSans.ttf", 24, (30, 30, 30), (225, 230, 215))]
GRADCAM_LAYER = "last feature map before pooling"


def images() -> None:
    from PIL import Image, ImageDraw, ImageFont

    out = HERE / "images"
    out.mkdir(parents=True, exist_ok=True)
    for i, (text, (font, size, fg, bg)) in enumerate(zip(TEXT, STYLES)):
        f = ImageFont.truetype(f"{FONTS}/{font}", size)
        x0, y0, x1, y1 = f.getbbox(text)
        pad = size // 3
        im = Image.new("RGB", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), bg)
        ImageDraw.Draw(im).text((pad - x0, pad - y0), text, font=f, fill=fg)
        im.save(out / f"line{i}.png")
        im.rotate(180).save(out / f"line{i}_180.png")


def vendor() -> None:
    import cv2
    import rapidocr_onnxruntime
    from rapidocr_onnxruntime.ch_ppocr_cls.text_cls import TextClassifier
    from rapidocr_onnxruntime.utils import read_yaml

    root = Path(rapidocr_onnxruntime.__file__).parent
    config = read_yaml(str(root / "config.yaml"))["Cls"]
    config["model_path"] = str(root / config["model_path"])
    assert Path(config["model_path"]).read_bytes() == MODEL.read_bytes(), "the bundled model is the wheel's own"
    tc = TextClassifier(config)
    names = sorted(p.name for p in (HERE / "images").glob("*.png"))
    rows, labels = [], []
    for name in names:
        img = cv2.imread(str(HERE / "images" / name))          # the vendor reads BGR with OpenCV
        prob = tc.infer(tc.resize_norm_img(img)[None].astype(np.float32))[0][0]  # its own session
        _, cls_res, _ = tc([img])
        labels.append(f"{name},{cls_res[0][0]},{cls_res[0][1]:.6f}")
        for c, lab in enumerate(config["label_list"]):
            rows.append((f"images/{name}", lab, repr(float(prob[c]))))
    with open(HERE / "expected_ppocr_cls.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["image", "class", "probability"])
        w.writerows(rows)
    (HERE / "vendor_labels.txt").write_text("image,label,score\n" + "\n".join(labels) + "\n")
    print(f"{len(names)} images -> {HERE / 'expected_ppocr_cls.csv'}")


def gradcam() -> None:
    import onnx
    import torch
    from onnx2torch import convert
    from PIL import Image
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    sys.path.insert(0, str(MODEL.parent))
    from ppocr_cls_fn import preprocess

    net = convert(_constants_as_initializers(onnx.load(str(MODEL)))).eval()
    layer = _last_map_module(net)
    refs = {}
    for p in sorted((HERE / "images").glob("*.png")):
        x = torch.from_numpy(preprocess(np.asarray(Image.open(p).convert("RGB")))[None])
        with torch.no_grad():
            top = int(net(x).argmax(1))
        with GradCAM(model=net, target_layers=[layer]) as cam:
            refs[p.name] = cam(input_tensor=x, targets=[ClassifierOutputTarget(top)])[0].astype(np.float32)
    np.savez_compressed(HERE / "gradcam_reference.npz", **refs)
    print(f"{len(refs)} maps at {type(layer).__name__} -> {HERE / 'gradcam_reference.npz'}")


def _constants_as_initializers(m):
    """Paddle's export keeps every weight in a ``Constant`` node; onnx2torch wants initializers
    (the same tensors moved, the math unchanged)."""
    from onnx import numpy_helper

    keep = []
    for n in m.graph.node:
        if n.op_type == "Constant" and n.attribute[0].name == "value":
            m.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(n.attribute[0].t), n.output[0]))
        else:
            keep.append(n)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    return m


def _last_map_module(net):
    """The module making the last 4-D map before global pooling (found by a forward hook)."""
    import torch

    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o, name=n: seen.append((name, m, tuple(o.shape))))
             for n, m in net.named_modules() if not list(m.children())]
    with torch.no_grad():
        net(torch.zeros(1, 3, 48, 192))
    for h in hooks:
        h.remove()
    maps = [(n, m, s) for n, m, s in seen if len(s) == 4 and s[2] * s[3] > 1]
    name, module, shape = maps[-1]
    print(f"layer {name} {shape}")
    return module


if __name__ == "__main__":
    {"images": images, "vendor": vendor, "gradcam": gradcam}[sys.argv[1]]()
