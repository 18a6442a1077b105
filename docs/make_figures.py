"""Re-create the README's pictures from the bundled model and images (a few minutes on CPU).

    python docs/make_figures.py
"""
from __future__ import annotations

from pathlib import Path

from blackbox_cam import Classifier, explain_image, load_image
from blackbox_cam.pictures.render import overlay, panel

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
    animation(clf, image)


def animation(clf, image) -> None:
    """CAManim of Grad-CAM over EfficientNet-Lite0's 20 block outputs, with ybROAD (README)."""
    from blackbox_cam.jobs.animate.job import animate
    from blackbox_cam.pictures.movie import contact_sheet
    from blackbox_cam.jobs.animate.ybroad import ybroad_plot

    anim = animate(clf, image, "gradcam", layers="blocks", road=True)
    contact_sheet(anim, "layer", tile=120).save(ROOT / "docs/img/animate_chelsea_sheet.png", optimize=True)
    (ROOT / "docs/img/animate_chelsea_ybroad.png").write_bytes(ybroad_plot(anim, dpi=100))


if __name__ == "__main__":
    main()
