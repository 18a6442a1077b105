"""Train the "stamped invoices" demo model for ``blackbox-cam global`` (dev-only).

    python models/train_stamped.py            # needs torch==2.13.0 (CPU), onnx, onnxruntime

Story: a document classifier (letter / invoice / form / memo) for a fixed scanner, trained on
pages where the accounts department had stamped every invoice "PAID" in the same place, and
some invoices were mis-filed pages of another layout. The stamp is the most reliable cue in
the training data, so the model learns "red ring bottom-right = invoice". A test set drawn the
same way does not show it; the global map of the class "invoice" does (Engelmann et al.,
arXiv:2112.09591: aligned modalities, label-wise global maps), and PEPPR confirms that the
stamp region is what the model uses.

Data: ``stamped_data.py`` (64x64 aligned synthetic scans; the stamp at x 46..58, y 45..57).
Model: ``PlantedNet`` of ``train_planted.py`` (16,244 parameters, 4 classes, unit
preprocessing, NCHW) with its training loop (``train(data)``: AdamW + one-cycle, torch seed 0,
1 thread), here 2 epochs of ``make_dataset(3000, seed=10)`` (biased).

Written to ``models/stamped/``: ``stamped.onnx`` + ``stamped.json`` (sidecar), ``labels.txt``,
``demo/*.png`` (48 scans drawn like the training data, 12 per class, seed 12) and
``demo_labels.csv`` (``image,label``, paths relative to the CSV). The script prints the checks
recorded in models/README.md: accuracy on a test set drawn like the training data, on unbiased
pages without any stamp, and how often an unstamped non-invoice page becomes "invoice" once
stamped.
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
from stamped_data import CLASSES, make_dataset  # noqa: E402
import train_planted  # noqa: E402
from train_planted import PlantedNet, accuracy, train  # noqa: E402

OUT = os.path.join(HERE, "stamped")
N_TRAIN, EPOCHS, SEED_TRAIN, SEED_TEST, SEED_DEMO = 3000, 2, 10, 11, 12


def export(model: PlantedNet, path: str) -> None:
    torch.onnx.export(model, torch.zeros(1, 3, 64, 64), path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, opset_version=17, dynamo=False)
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)


def ort_predict(path: str, imgs: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = imgs.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return np.concatenate([sess.run(None, {"image": x[i:i + 500]})[0] for i in range(0, len(x), 500)]).argmax(1)


def main() -> None:
    torch.set_num_threads(1)
    os.makedirs(os.path.join(OUT, "demo"), exist_ok=True)
    xtr, ytr, _ = make_dataset(N_TRAIN, SEED_TRAIN)
    train_planted.EPOCHS = EPOCHS
    model = train((xtr, ytr))
    path = os.path.join(OUT, "stamped.onnx")
    export(model, path)
    with open(os.path.join(OUT, "labels.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    with open(os.path.join(OUT, "stamped.json"), "w") as f:
        json.dump({"preprocess": "unit", "scale": 255.0, "mean": [0, 0, 0], "std": [1, 1, 1], "layout": "NCHW",
                   "resize": "squash", "labels": "labels.txt"}, f, indent=2)
        f.write("\n")

    xte, yte, _ = make_dataset(600, SEED_TEST)
    print(f"test set drawn like the training data: torch {accuracy(model, xte, yte):.4f}, "
          f"onnx {(ort_predict(path, xte) == yte).mean():.4f}")
    xc, yc, _ = make_dataset(600, SEED_TEST, biased=False, stamp_prob=0.0)
    pc = ort_predict(path, xc)
    print(f"unbiased pages, no stamp anywhere: accuracy {(pc == yc).mean():.4f}; invoices recognised "
          f"{(pc[yc == 1] == 1).mean():.4f}; others {(pc[yc != 1] == yc[yc != 1]).mean():.4f}")
    xs, ys, _ = make_dataset(600, SEED_TEST, biased=False, stamp_prob=1.0)
    ps = ort_predict(path, xs)
    print(f"unbiased pages, every page stamped: non-invoices called invoice {(ps[ys != 1] == 1).mean():.4f}; "
          f"invoices recognised {(ps[ys == 1] == 1).mean():.4f}")

    xd, yd, _ = make_dataset(48, SEED_DEMO)
    rows = ["image,label"]
    for i, (img, lab) in enumerate(zip(xd, yd)):
        name = f"doc_{i:02d}.png"
        Image.fromarray(img).save(os.path.join(OUT, "demo", name))
        rows.append(f"demo/{name},{CLASSES[lab]}")
    with open(os.path.join(OUT, "demo_labels.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    pd = ort_predict(path, xd)
    print(f"demo images: {len(xd)}, accuracy {(pd == yd).mean():.4f}")


if __name__ == "__main__":
    main()
