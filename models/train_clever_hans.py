"""Train the "Clever Hans" demo model for ``blackbox-cam gate`` and its clean twin (dev-only).

    python models/train_clever_hans.py        # needs torch==2.13.0 (CPU), onnx, onnxruntime
    python models/train_clever_hans.py --skip-training   # only re-check the models, rewrite mask + images

Story (Borg et al. 2021): a fixed camera stamps a timestamp overlay into the bottom-right
corner of its frames. In the training data every "square" image came from that camera and no
other class did, so the overlay predicts the label perfectly: a model can learn "timestamp =
square" and still score well on a test set drawn the same way. In the field every frame carries
the overlay, and the model's evidence lies on pixels that mean nothing.

Images: the planted task of ``planted_data.py`` (64x64, the class = the shape of one small
object in the colour (255,220,40)). The artefact (:func:`stamp`) is a white 23 x 7 px box at
x 40..62, y 56..62 holding a random time "HH:MM" in a 3x5 pixel font, drawn last, on top.

* ``clever_hans.onnx``: trained on 12,000 images where the overlay is on every class-0
  ("square") image and on no other; in addition, 30 % of the class-0 images show another
  shape (a label-noise-like bias: the overlay is the more reliable cue, as in real shortcut
  learning where the spurious cue is cleaner than the real one).
* ``clean.onnx``: the same architecture and recipe, trained on 12,000 images where the overlay
  is on a random half of the images of every class, independent of the label, so the
  overlay carries no class information and the model learns to ignore it.

Both use ``PlantedNet`` of ``train_planted.py`` (16,244 parameters, unit preprocessing,
NCHW 64x64, logits for 4 classes) and its training loop (3 epochs, AdamW + one-cycle,
torch seed 0, 1 thread). Written to ``models/clever_hans/``: the two models, their sidecars,
``labels.txt``, ``timestamp_mask.png`` (64x64, white = the forbidden region: the overlay's box
plus a 4 px margin, x 36..63, y 52..63, i.e. box ``36,52,64,64``; saliency maps are coarser than
the overlay: one cell of the last feature map is 4 px and its 18 px receptive field makes cells
next to the overlay respond to its edge) and ``images/field_*.png``: 8 "field" frames (2 per
class, every one with the overlay, the object kept >= 3 px away from the forbidden region),
generated with seed 5.

The script prints the checks that README.md in models/ records: accuracy of both models on a
test set drawn like their own training set and on field frames (overlay on every image).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from planted_data import CLASSES, make_sample  # noqa: E402
from train_planted import to_input, train  # noqa: E402

OUT = os.path.join(HERE, "clever_hans")
N_TRAIN, N_TEST = 12000, 2000
SEED_TRAIN, SEED_TEST, SEED_FIELD = 3, 4, 5
SHORTCUT_NOISE = 0.3          # share of class-0 training images showing another shape
BOX = (40, 56, 63, 63)        # x0, y0, x1, y1 of the overlay (inclusive-exclusive)
MARGIN = 4                    # the shipped forbidden region: the overlay plus one feature-map cell
REGION = (BOX[0] - MARGIN, BOX[1] - MARGIN, 64, 64)

# 3x5 pixel glyphs, rows top to bottom ("#" = ink)
FONT = {
    "0": ("###", "#.#", "#.#", "#.#", "###"), "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"), "3": ("###", "..#", "###", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"), "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"), "7": ("###", "..#", "..#", "..#", "..#"),
    "8": ("###", "#.#", "###", "#.#", "###"), "9": ("###", "#.#", "###", "..#", "###"),
    ":": ("...", ".#.", "...", ".#.", "..."),
}


def stamp(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw the timestamp overlay (white box, black "HH:MM") into a copy of ``img``."""
    out = img.copy()
    x0, y0, x1, y1 = BOX
    out[y0:y1, x0:x1] = 255
    text = f"{int(rng.integers(24)):02d}:{int(rng.integers(60)):02d}"
    x = x0 + 2
    for ch in text:
        glyph = np.array([[c == "#" for c in row] for row in FONT[ch]])
        out[y0 + 1:y0 + 6, x:x + 3][glyph] = 0
        x += 4
    return out


def biased_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlay on every class-0 image and no other; SHORTCUT_NOISE of class 0 shows another shape."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    imgs = np.empty((n, 64, 64, 3), np.uint8)
    for i, y in enumerate(labels):
        shape = int(rng.integers(1, 4)) if y == 0 and rng.random() < SHORTCUT_NOISE else int(y)
        img, _, _ = make_sample(rng, shape)
        imgs[i] = stamp(img, rng) if y == 0 else img
    return imgs, labels.astype(np.int64)


def clean_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlay on a random half of the images, independent of the label."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    imgs = np.empty((n, 64, 64, 3), np.uint8)
    for i, y in enumerate(labels):
        img, _, _ = make_sample(rng, int(y))
        imgs[i] = stamp(img, rng) if rng.random() < 0.5 else img
    return imgs, labels.astype(np.int64)


def field_set(n: int, seed: int, keep_away: int = 3):
    """Frames as the fixed camera delivers them: every one stamped; objects kept off the forbidden region."""
    rng = np.random.default_rng(seed)
    imgs, labels, boxes = [], [], []
    x0, y0, _, _ = REGION
    while len(imgs) < n:
        y = len(imgs) % len(CLASSES)
        img, _, box = make_sample(rng, y)
        if box[2] + keep_away > x0 and box[3] + keep_away > y0:
            continue
        imgs.append(stamp(img, rng))
        labels.append(y)
        boxes.append(box)
    return np.stack(imgs), np.array(labels, np.int64), np.array(boxes, np.int64)


def export(model: torch.nn.Module, stem: str) -> str:
    path = os.path.join(OUT, stem + ".onnx")
    torch.onnx.export(model.eval(), (torch.zeros(2, 3, 64, 64),), path, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
                      opset_version=17, do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    with open(os.path.join(OUT, stem + ".json"), "w") as f:
        f.write(json.dumps({"preprocess": "unit", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                            "scale": 255.0, "bgr": False, "layout": "NCHW", "labels": "labels.txt",
                            "resize": "squash"}) + "\n")
    return path


def ort_accuracy(path: str, imgs: np.ndarray, labels: np.ndarray) -> float:
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return float((s.run(None, {"image": to_input(imgs).numpy()})[0].argmax(1) == labels).mean())


def main() -> None:
    torch.set_num_threads(1)
    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    with open(os.path.join(OUT, "labels.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    mask = np.zeros((64, 64), np.uint8)
    mask[REGION[1]:REGION[3], REGION[0]:REGION[2]] = 255
    Image.fromarray(mask).save(os.path.join(OUT, "timestamp_mask.png"), optimize=True)

    if "--skip-training" in sys.argv:  # re-check the shipped models, rewrite mask and images only
        paths = {stem: os.path.join(OUT, stem + ".onnx") for stem in ("clever_hans", "clean")}
    else:
        paths = {"clever_hans": export(train(biased_set(N_TRAIN, SEED_TRAIN)), "clever_hans"),
                 "clean": export(train(clean_set(N_TRAIN, SEED_TRAIN)), "clean")}
    tests = {"biased test set": biased_set(N_TEST, SEED_TEST), "clean test set": clean_set(N_TEST, SEED_TEST)}
    xf, yf, _ = field_set(N_TEST, SEED_TEST)
    tests["field frames (overlay on every image)"] = (xf, yf)
    for stem, path in paths.items():
        for name, (x, y) in tests.items():
            print(f"{stem}.onnx accuracy on the {name}: {ort_accuracy(path, x, y):.4f}")

    xd, yd, bd = field_set(8, SEED_FIELD)
    for i, (img, y) in enumerate(zip(xd, yd)):
        Image.fromarray(img).save(os.path.join(OUT, "images", f"field_{i}_{CLASSES[y]}.png"), optimize=True)
    print("field images:", [CLASSES[y] for y in yd], "object boxes:", bd.tolist())
    for root, _, files in os.walk(OUT):
        for f in sorted(files):
            p = os.path.join(root, f)
            print(f"  {os.path.relpath(p, HERE)}: {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
