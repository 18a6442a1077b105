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
    detection_gradcam()


def detection_gradcam() -> None:
    """Grad-CAM per detection at each level's neck map and EigenCAM inside the box (README).

    The tiny YOLOv8 of tests/data/detection_gradcam has random weights: the picture shows the
    mechanics (each detection explained at the map its candidate comes from), not evidence."""
    import numpy as np

    from blackbox_cam.methods import METHODS, gradcam
    from blackbox_cam.methods._detgrad import CandidateTarget
    from blackbox_cam.model.open import open_model
    from blackbox_cam.pictures.boxes import draw_boxes

    data = ROOT / "tests/data/detection_gradcam"
    det = open_model(data / "yolov8_tiny.onnx")
    pixels = np.load(data / "yolov8_tiny.npz")["pixels"][1]  # astronaut.png, Ultralytics' letterbox
    image = pixels.transpose(1, 2, 0)
    x = pixels.astype(np.float32) / 255
    found = det.detect(x[None])[0]
    levels = gradcam.detector_levels(det)
    tiles, captions = [], []
    for level in levels:
        ks = [k for k, c in enumerate(found.candidate) if level.holds(int(c))]
        if not ks:
            continue
        k = max(ks, key=lambda k: found.scores[k])
        t = CandidateTarget(int(found.candidate[k]), int(found.classes[k]), tuple(found.boxes[k]))
        label = f"{det.labels[t.cls]} {found.scores[k]:.2f}"
        for method, kw in (("gradcam", {}), ("eigencam", {"in_box": True})):
            out = METHODS[method].hook(det, x, t, budget=None, seed=0, score=float(found.scores[k]), layer="auto",
                                       **kw)
            tiles.append(draw_boxes(overlay(image, out.saliency), found.boxes[k:k + 1], [t.cls], [label]))
            captions.append(f"{method}{' --in-box' if kw else ''}\n{level.name}, candidate {t.candidate}")
    panel(tiles, captions, tile=240, title="Tiny YOLOv8 (random weights): one map per detection, at its level's "
                                           "neck map").save(ROOT / "docs/img/detection_gradcam.png", optimize=True)


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
