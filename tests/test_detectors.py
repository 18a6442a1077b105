"""Detectors read, run and checked like their vendor's own code (issue 26, items 1-3).

The models are real Ultralytics exports (``models/detectors/make_ultralytics.py``: the real
exporter on Ultralytics' own architectures, tiny width, random weights); the references are
Ultralytics' own code on the same ONNX files (its ``LetterBox`` and its predictor:
``non_max_suppression`` + ``scale_boxes``), stored as ``.npz``, so these tests need no torch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import blackbox_cam as bc
from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.model.detections import Candidates, decode, read_layout, ultralytics_metadata
from blackbox_cam.model.nms import greedy_nms, non_max_suppression

ROOT = Path(__file__).resolve().parents[1]
DET = ROOT / "models" / "detectors"
IMAGES = ROOT / "models" / "images"
ULTRALYTICS = ("yolov8t", "yolo11t", "yolo26t")


def _image(name: str) -> np.ndarray:
    return np.asarray(Image.open(IMAGES / name).convert("RGB")).astype(np.float32)


@pytest.fixture(scope="module", params=ULTRALYTICS)
def ultra(request):
    return request.param, bc.Detector(DET / f"{request.param}.onnx"), np.load(DET / f"{request.param}_ultralytics.npz")


def test_reader_says_detector_and_why(ultra):
    name, det, _ = ultra
    sig = det.signature
    assert sig.task == "detector"
    assert "metadata task=detect" in sig.task_reason and sig.detector.outputs[0] in sig.task_reason
    assert sig.detector.kind == ("nms-6" if name == "yolo26t" else "ultralytics")
    assert sig.detector.nms_inside is (name == "yolo26t")
    assert det.num_classes == 20 and det.labels[:2] == ["aeroplane", "bicycle"]
    assert det.labels_source == "metadata_props['names']"


def test_ultralytics_letterbox_bit_for_bit(ultra):
    """No sidecar: an Ultralytics export gets its own letterbox (cv2 linear on uint8, grey 114)."""
    _, det, ref = ultra
    for i, name in enumerate(ref["images"]):
        x = det.prepare(_image(str(name)))
        np.testing.assert_array_equal(x.transpose(1, 2, 0) * 255.0, ref[f"{i}_input"].astype(np.float32))


def test_detections_match_ultralytics_predictor(ultra):
    """Same boxes within 1e-3 of the input size, scores within 1e-4, same classes, same order."""
    _, det, ref = ultra
    for i, name in enumerate(ref["images"]):
        res = bc.detect(det, IMAGES / str(name))
        assert len(res) == len(ref[f"{i}_scores"]) > 0
        np.testing.assert_allclose(res.boxes, ref[f"{i}_boxes"], atol=1e-3 * det.input_size[0])
        np.testing.assert_allclose(res.scores, ref[f"{i}_scores"], atol=1e-4)
        np.testing.assert_array_equal(res.classes, ref[f"{i}_classes"])


def test_candidates_are_the_raw_head(ultra):
    """Candidates decode the model's own output: boxes x0y0x1y1 from cx, cy, w, h; one query per image."""
    name, det, ref = ultra
    x = np.stack([det.prepare(_image(str(n))) for n in ref["images"]])
    q = det.queries
    cand = det.candidates(x)
    assert det.queries == q + len(x)
    assert cand.boxes.dtype == np.float32 and cand.boxes.shape[:2] == cand.probs.shape[:2] == cand.objectness.shape
    raw = ref["0_raw0"]
    if name == "yolo26t":
        np.testing.assert_allclose(cand.boxes[0], raw[0, :, :4], atol=1e-3)
        np.testing.assert_allclose(cand.objectness[0], raw[0, :, 4], atol=1e-5)
        assert (cand.probs[0].argmax(1) == raw[0, :, 5]).all() and (cand.probs[0].sum(1) == 1).all()
    else:
        cxcywh = raw[0, :4].T
        np.testing.assert_allclose(cand.boxes[0, :, :2], cxcywh[:, :2] - cxcywh[:, 2:] / 2, atol=1e-3)
        np.testing.assert_allclose(cand.probs[0], raw[0, 4:].T, atol=1e-5)
        assert (cand.objectness == 1).all()


def test_budget_and_padding_shared_with_the_classifier():
    det = bc.Detector(DET / "yolov8t.onnx")
    img = _image("rocket.jpg")
    x = det.prepare(img)
    with det.limit(1):
        det.candidates(x[None])
        with pytest.raises(bc.BudgetExceeded):
            det.candidates(x[None])
    with det.padding_kept(x, img.shape[:2]):  # a letterbox's grey rows stay grey in masked inputs
        z = np.zeros_like(x)[None]
        a = det.candidates(z)
    b = det.candidates(np.where(np.isclose(x, 114 / 255), x, 0)[None])
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)


def test_to_image_boxes_inverts_the_geometry():
    det = bc.Detector(DET / "yolov8t.onnx")
    h, w = 427, 640
    pl = det.geometry.place((h, w), det.input_size)
    top, left, nh, nw = pl.inner
    inner = np.array([[left, top, left + nw, top + nh], [left + nw / 4, top + nh / 2, left + nw / 2, top + nh]])
    np.testing.assert_allclose(det.to_image_boxes(inner, (h, w)), [[0, 0, w, h], [w / 4, h / 2, w / 2, h]], atol=1e-3)
    outside = np.array([[-10.0, -10.0, 400.0, 400.0]])
    np.testing.assert_allclose(det.to_image_boxes(outside, (h, w)), [[0, 0, w, h]])


def test_nms_is_class_aware_greedy_and_keeps_best_first():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    probs = np.array([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.3, 0.0]], np.float32)
    idx, scores, classes = non_max_suppression(boxes, probs, np.ones(4, np.float32))
    # box 1 overlaps box 0 (IoU 0.68 > 0.45, same class): dropped; box 2 is another class: kept
    assert idx.tolist() == [0, 2, 3] and classes.tolist() == [0, 1, 0]
    np.testing.assert_allclose(scores, [0.9, 0.7, 0.3])
    idx, _, _ = non_max_suppression(boxes, probs, np.array([1, 1, 1, 0.5], np.float32))
    assert idx.tolist() == [0, 2]  # objectness x class 0.15 < 0.25
    assert greedy_nms(boxes, np.array([1, 2, 3, 4], np.float32), 0.45).tolist() == [3, 2]


def test_thresholds_refused_in_one_line():
    with pytest.raises(BlackboxCamError, match=r"--conf must be in \[0, 1\]"):
        bc.Detector(DET / "yolov8t.onnx", conf=-0.1)
    det = bc.Detector(DET / "yolov8t.onnx")
    with pytest.raises(BlackboxCamError, match=r"--iou must be in \[0, 1\]"):
        bc.detect(det, IMAGES / "rocket.jpg", iou=1.5)


def test_open_model_decides_the_task():
    assert isinstance(bc.open_model(DET / "yolov8t.onnx"), bc.Detector)
    clf = bc.open_model(ROOT / "models" / "efficientnet_lite0.onnx")
    assert isinstance(clf, bc.Classifier) and clf.signature.task == "classifier"
    with pytest.raises(BlackboxCamError, match="a detector, not a classifier"):
        bc.Classifier(DET / "yolov8t.onnx")
    with pytest.raises(BlackboxCamError, match="a classifier, not a detector"):
        bc.Detector(ROOT / "models" / "efficientnet_lite0.onnx")


def test_metadata_read_as_ultralytics_reads_it():
    import onnx

    m = onnx.load(str(DET / "yolov8t.onnx"), load_external_data=False)
    meta = ultralytics_metadata([(p.key, p.value) for p in m.metadata_props])
    assert meta["task"] == "detect" and meta["imgsz"] == [320, 320] and meta["stride"] == 32
    assert meta["names"][0] == "aeroplane" and meta["end2end"] is False and isinstance(meta["args"], dict)


def test_detect_result_shows_boxes():
    res = bc.detect(DET / "yolov8t.onnx", IMAGES / "astronaut.png", conf=0.3)
    assert res.picture().size == (512, 512) and res._repr_png_()[:4] == b"\x89PNG"
    assert all(d["label"] and len(d["box"]) == 4 for d in res.record())
    assert res.lines()[0].startswith(str(IMAGES / "astronaut.png"))


# -- the command ---------------------------------------------------------------------------------
def _cli(args):
    from click.testing import CliRunner

    from blackbox_cam.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_detect_command_writes_json_and_overlays_and_resumes(tmp_path):
    import json

    out = tmp_path / "out"
    r = _cli(["detect", DET / "yolov8t.onnx", IMAGES / "rocket.jpg", IMAGES / "astronaut.png", "--out", out])
    assert r.exit_code == 0, r.output
    recs = json.loads((out / "detections.json").read_text())
    assert [Path(x["image"]).name for x in recs] == ["rocket.jpg", "astronaut.png"]
    ref = np.load(DET / "yolov8t_ultralytics.npz")
    rocket = recs[0]["detections"]
    assert len(rocket) == len(ref["1_scores"])
    np.testing.assert_allclose([d["box"] for d in rocket], ref["1_boxes"], atol=1e-2)
    assert {"box", "label", "class", "score"} <= set(rocket[0]) and rocket[0]["label"] == "diningtable"
    assert sum(ln.startswith(str(IMAGES / "rocket.jpg") + ": ") for ln in r.output.splitlines()) == len(rocket)
    png = Image.open(out / recs[0]["png"])
    assert png.size == (640, 427)
    again = _cli(["detect", DET / "yolov8t.onnx", IMAGES / "rocket.jpg", "--out", out])
    assert again.exit_code == 0 and "(recorded)" in again.output


@pytest.mark.parametrize("flag, value, message", [("--conf", "-0.1", "--conf must be in [0, 1]"),
                                                  ("--iou", "1.5", "--iou must be in [0, 1]")])
def test_detect_bad_thresholds_exit_2_nothing_written(tmp_path, flag, value, message):
    out = tmp_path / "out"
    r = _cli(["detect", DET / "yolov8t.onnx", IMAGES / "rocket.jpg", "--out", out, flag, value])
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1].startswith(f"error: {message}")
    assert not out.exists()
