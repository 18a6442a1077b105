"""Make the xaitk-saliency reference for ``drise`` (dev-only; the test needs no xaitk).

    pip install --no-deps xaitk-saliency==0.15.0 smqtk-core smqtk-detection smqtk-classifier \
        smqtk-dataprovider smqtk-descriptors smqtk-image-io      # (plus scikit-learn, scipy: installed)
    PYTHONPATH=. python tests/data/detection_maps/make_xaitk_reference.py

What it does: runs ``blackbox_cam``'s ``drise`` (200 masks + the unmasked prediction, seed 0) on
held-out scene 6 (three detections, both classes) of the planted-cue detector (models/planted_detector/) for every detection,
through a wrapper that records the candidates of every masked image the method asked for; rebuilds
the same masks at full resolution from the method's seeded stream (``rise.sample``: grid draws from
``default_rng([seed, 1])``, shifts from ``default_rng([seed, 2])``, bilinear upsampling of
``methods.masks``); and gives xaitk-saliency's ``DRISEScoring.generate`` those masks, the recorded
candidates (``[masks, A, 4 + 1 + C]``: box, objectness as ``drise`` scores it, class vector) and the
detections (``[T, 4 + 1 + C]``). xaitk's IoU counts pixels inclusively (``x1 - x0 + 1``); it is given
the same boxes in that convention (``x1 - 1``, ``y1 - 1``), which makes its IoU ours exactly.

Writes xaitk_drise.npz: ``xaitk`` float64 [T, 128, 128] (xaitk's output; the test compares
``drise``'s raw map divided by its max |value|, xaitk's scale) and ``boxes`` [T, 4] (the detections,
model pixels), ``budget``, ``seed``, ``scene``, ``xaitk_version``.
"""
from __future__ import annotations

import math
import os
from importlib.metadata import version
from pathlib import Path

import numpy as np

from blackbox_cam.explainer.detection_maps import choose_targets, score_detections
from blackbox_cam.methods import METHODS
from blackbox_cam.methods.masks import accumulate
from blackbox_cam.methods.targets import candidate_objectness
from blackbox_cam.model.detector import Detector

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
BUDGET, SEED, SCENE = 201, 0, 6  # scene 6: three detections, both classes
#: Masked pixels black (the D-RISE paper's fill, drise's default when the reference was made; drise now
#: defaults to the mean colour): the fill changes the candidates, not what DRISEScoring does with them.
BASELINE = "zeros"


class Recording:
    """The detector, recording the candidates of every batch it is asked for."""

    def __init__(self, det: Detector) -> None:
        self.det, self.seen = det, []

    def __getattr__(self, name):
        return getattr(self.det, name)

    @property
    def queries(self) -> int:
        return self.det.queries

    def candidates(self, x):
        c = self.det.candidates(x)
        self.seen.append(c)
        return c


def main() -> None:
    from xaitk_saliency.impls.gen_detector_prop_sal.drise_scoring import DRISEScoring

    det = Detector(ROOT / "models/planted_detector/planted_detector.onnx", device="cpu")
    held = np.load(ROOT / "models/planted_detector/heldout.npz")
    image = held["images"][SCENE].astype(np.float32)
    scored = score_detections(det, image)
    targets = choose_targets(det, scored)
    rec = Recording(det)
    call = METHODS["drise"].bind(BUDGET, det.input_size, baseline=BASELINE)
    scores = targets.score_candidates(scored.candidates)[0]
    expls = call.run_targets(rec, scored.x, targets, seed=SEED, scores=scores)
    ours = np.stack([e.extra["raw"].astype(np.float64) for e in expls])
    ours = ours / np.abs(ours).max(axis=(1, 2), keepdims=True)

    # the same masks at full resolution, from the method's seeded stream (rise.sample)
    n, (h, w), s, p = BUDGET - 1, det.input_size, 16, 0.5
    cell_h, cell_w = math.ceil(h / s), math.ceil(w / s)
    up = ((s + 1) * cell_h / s, (s + 1) * cell_w / s)
    grids = (np.random.default_rng([SEED, 1]).random((n, s, s)) < p).astype(np.float32)
    offsets = np.floor(np.random.default_rng([SEED, 2]).random((n, 2)) * (cell_h, cell_w))
    masks = np.stack([accumulate(grids[i:i + 1], np.ones(1), (h, w), up, offsets[i:i + 1]) for i in range(n)])

    boxes = np.concatenate([c.boxes for c in rec.seen]).astype(np.float64)
    probs = np.concatenate([c.probs for c in rec.seen]).astype(np.float64)
    obj = np.concatenate([candidate_objectness(c) for c in rec.seen])
    assert len(boxes) == n, (len(boxes), n)
    inclusive = boxes.copy()
    inclusive[..., 2:] -= 1.0
    pert = np.concatenate([inclusive, obj[..., None], probs], axis=-1)
    tb = targets.boxes.copy()
    tb[:, 2:] -= 1.0
    ref = np.concatenate([tb, targets.objectness[:, None], targets.probs], axis=1)
    xaitk = DRISEScoring().generate(ref, pert, masks)
    print(f"{targets.count} detections, {n} masks; max |ours - xaitk| = {np.abs(ours - xaitk).max():.2e}")
    np.savez_compressed(HERE / "xaitk_drise.npz", xaitk=xaitk.astype(np.float64),
                        boxes=targets.boxes, budget=BUDGET, seed=SEED, scene=SCENE,
                        xaitk_version=version("xaitk-saliency"))
    print(f"wrote {HERE / 'xaitk_drise.npz'} ({os.path.getsize(HERE / 'xaitk_drise.npz') // 1024} KiB)")


if __name__ == "__main__":
    main()
