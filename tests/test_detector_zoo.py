"""The detector conformance zoo: detectors exported by their own exporters, each run through
blackbox-cam's ``Detector`` + ``detect`` and compared with that family's own decoding + NMS on the
same ONNX file: the same detections, boxes within 1e-3 of the input size, scores within 1e-4,
the same classes.

``models/make_detector_zoo.py`` (dev-only, needs torch and Ultralytics) builds Ultralytics
YOLOv8 / YOLO11 (opset 13 and 17, ``dynamic=True``, ``nms=True``, the exporter's FP16, a uint8
input), Ultralytics RT-DETR, a YOLOv5-style ``[B, A, 5+C]`` head (opset 13, 17, float16 in and
out) and a DETR-style head with random weights, and stores the references: Ultralytics' own
predictors (or its LetterBox + non_max_suppression + scale_boxes for the uint8 input), YOLOv5's
``non_max_suppression`` and DETR's ``PostProcess``, written from their code. These tests read
only the stored files (no torch, no Ultralytics).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import blackbox_cam as bc
from blackbox_cam.model.detector import Detector

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "data" / "detector_zoo"
ZOO = ROOT / "models" / "detectors" / "zoo"
MANIFEST = json.loads((REF / "zoo.json").read_text())
MODELS = MANIFEST["models"]
#: Exports blackbox-cam refuses, by name -> the words its one-line refusal must contain.
REFUSED: dict[str, str] = {}


def _match(ours, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, tol_px: float):
    """Pair each reference detection with ours (same class, nearest box); the largest box and
    score gaps, and the reference detections left unpaired / ours left over."""
    free = list(range(len(ours.scores)))
    box_gap = score_gap = 0.0
    missed = []
    for b, s, c in zip(boxes, scores, classes):
        cand = [i for i in free if ours.classes[i] == c]
        if not cand:
            missed.append((b, s))
            continue
        i = min(cand, key=lambda k: float(np.abs(ours.boxes[k] - b).max()))
        gap = float(np.abs(ours.boxes[i] - b).max())
        if gap > tol_px:
            missed.append((b, s))
            continue
        free.remove(i)
        box_gap, score_gap = max(box_gap, gap), max(score_gap, abs(float(ours.scores[i]) - float(s)))
    return box_gap, score_gap, missed, [ours.scores[i] for i in free]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_detector_finds_what_its_family_s_own_code_finds(name):
    entry = MODELS[name]
    path = ZOO / entry["file"]
    if name in REFUSED:
        with pytest.raises(bc.BlackboxCamError, match=REFUSED[name]):
            Detector(path)
        return
    det = Detector(path)
    assert tuple(det.input_size) == tuple(entry["input_hw"]), det.input_size
    ref = np.load(REF / f"{name}.npz")
    conf = MANIFEST["conf"]
    total = 0
    for image in MANIFEST["images"]:
        key = Path(image).name
        ours = bc.detect(det, str(ROOT / image), progress=False)
        boxes, scores, classes = (ref[f"{key}/{k}"] for k in ("boxes", "scores", "classes"))
        total += len(scores)
        # 1e-3 of the input size, in the image's pixels (the input is the image scaled)
        tol_px = 1e-3 * max(entry["input_hw"]) * max(ours.image_size) / max(entry["input_hw"])
        box_gap, score_gap, missed, extra = _match(ours, boxes, scores, classes, tol_px)
        # a detection within 1e-4 of the threshold may fall either side of it
        missed = [m for m in missed if m[1] > conf + 1e-4]
        extra = [s for s in extra if s > conf + 1e-4]
        assert not missed, f"{name} on {key}: {len(missed)} of the reference's detections not found, e.g. {missed[0]}"
        assert not extra, f"{name} on {key}: {len(extra)} detection(s) the reference does not have (scores {extra[:3]})"
        assert box_gap <= tol_px, f"{name} on {key}: boxes {box_gap:.2e} px off the reference (tolerance {tol_px:.2e})"
        assert score_gap <= 1e-4, f"{name} on {key}: scores {score_gap:.2e} off the reference"
    assert total == sum(entry["detections"].values()) and total > 0


def test_every_zoo_row_is_green_or_refused_by_name():
    """The README's table lists every export; a refused one must be refused in one line that
    names the file and what is not read (never a traceback, never silent boxes)."""
    assert set(REFUSED) <= set(MODELS)
    families = {e["family"] for e in MODELS.values()}
    assert families == {"yolov8", "yolo11", "rtdetr", "yolov5", "detr"}
    for name in REFUSED:
        with pytest.raises(bc.BlackboxCamError) as err:
            Detector(ZOO / MODELS[name]["file"])
        line = str(err.value)
        assert "\n" not in line and MODELS[name]["file"] in line, line


def test_ultralytics_rtdetr_export_is_read_as_its_top_k_rows_and_squashed():
    """Ultralytics 8.4 exports RT-DETR's decoder output as top-k rows (cx, cy, w, h, score, class),
    and its predictor squashes the image (no letterbox): read as 5 classes, never as 2."""
    det = Detector(ZOO / "rtdetr_op17.onnx")
    assert det.signature.detector.kind == "rtdetr" and det.num_classes == 5
    assert det.geometry.mode == "squash"


def test_uint8_input_export_is_fed_pixels_not_unit_values():
    """An Ultralytics export whose input is uint8 (a Cast inside) gets 0..255 pixels: Ultralytics'
    default /255 would round every pixel to 0 or 1 and find nothing."""
    det = Detector(ZOO / "yolov8_uint8.onnx")
    assert det.preprocessing.name == "raw" and det.input_dtype == np.uint8
    x = det.prepare(np.full((100, 200, 3), 200.0, np.float32))
    assert x.max() == pytest.approx(200.0)
