"""The bundled EfficientNet-Lite0 through its declarative sidecar and through the same pipeline
written as a function (``models/efficientnet_lite0_fn.py``): how far apart are the maps?

White-box maps are equal (the function's output is the sidecar's, and the probed geometry maps
back what the declared one does). Black-box maps are equal on images at the model's input size
(masking before or after the function is then the same: the masks' baseline is the colour the
function maps to model zero, 127 here, probed with constant images). On other sizes the masks
are drawn in different pixels (the image's vs the model input's), so the maps differ as two
seeds' would; measured here on the four bundled photos: Spearman's rank correlation of the two
maps at the image's size, and deletion / insertion AUC of each (both scored through the
sidecar's classifier, so by the same yardstick). Writes ``bench/results/vendor_fn_agreement.json``.
Usage: ``python bench/vendor_fn_agreement.py [--budget 500]``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from blackbox_cam.explainer.pipeline import explain_image
from blackbox_cam.io.images import load_image
from blackbox_cam.metrics.agreement import spearman
from blackbox_cam.metrics.causal import deletion, insertion
from blackbox_cam.model.runtime import Classifier

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/efficientnet_lite0.onnx"
FN = f"{ROOT / 'models/efficientnet_lite0_fn.py'}:preprocess"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--images", default="astronaut.png,chelsea.png,coffee.png,rocket.jpg")
    a = ap.parse_args()
    side, fn = Classifier(MODEL), Classifier(MODEL, preprocess_fn=FN)
    rows, load0 = [], os.getloadavg()
    for p in [ROOT / "models/images" / n for n in a.images.split(",")]:
        im = load_image(p)
        x = side.prepare(im)
        for method in ("gradcam", "decam", "rise", "occlusion"):
            kw = {} if method == "gradcam" else {"window": 28} if method == "occlusion" else {"budget": a.budget}
            ra = explain_image(side, im, method, seed=0, **kw)
            rb = explain_image(fn, im, method, seed=0, **kw)
            a_img, b_img = ra.saliency, rb.saliency
            # both maps in the sidecar's model space for the causal metrics (the same yardstick)
            from blackbox_cam.io.images import resize_map
            b_model = resize_map(b_img, tuple(side.input_size))
            row = {"image": p.name, "size": list(im.shape[:2]), "method": method,
                   "max_abs_diff": float(np.abs(a_img - b_img).max()), "spearman": spearman(a_img, b_img),
                   "deletion_sidecar": deletion(side.probabilities, x, ra.explanation.saliency, ra.target).auc,
                   "deletion_function": deletion(side.probabilities, x, b_model, ra.target).auc,
                   "insertion_sidecar": insertion(side.probabilities, x, ra.explanation.saliency, ra.target).auc,
                   "insertion_function": insertion(side.probabilities, x, b_model, ra.target).auc}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (ROOT / "bench/results/vendor_fn_agreement.json").write_text(
        json.dumps({"load_before": load0, "load_after": os.getloadavg(), "budget": a.budget, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
