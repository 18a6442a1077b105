"""Re-create the README's pictures from the bundled model and images (a few minutes on CPU).

    python docs/make_figures.py
"""
from __future__ import annotations

from pathlib import Path

from blackbox_cam import Classifier, explain_image, load_image
from blackbox_cam.render import overlay, panel

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    clf = Classifier(ROOT / "models/efficientnet_lite0.onnx")
    image = load_image(ROOT / "models/images/chelsea.png")
    tiles, captions = [overlay(image, image[:, :, 0] * 0, alpha=0.0)], ["chelsea.png"]
    for method, budget in (("decam", 2000), ("rise", 4000), ("gradcam", None)):
        res = explain_image(clf, image, method, budget=budget, seed=0)
        tiles.append(overlay(image, res.saliency))
        captions.append(f"{method}: {res.explanation.queries} queries")  # seconds: see the benchmarks
    title = f"EfficientNet-Lite0: {clf.label(res.target)} (p = {res.score:.2f})"
    panel(tiles, captions, tile=256, title=title).save(ROOT / "docs/img/chelsea_methods.png")


if __name__ == "__main__":
    main()
