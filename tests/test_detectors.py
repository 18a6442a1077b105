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
ULTRALYTICS = ("yolov8t", "yolo11t", "yolo26t", "yolov8t_nms")


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
    inside = name in ("yolo26t", "yolov8t_nms")
    assert sig.detector.kind == ("nms-6" if inside else "ultralytics")
    assert sig.detector.nms_inside is inside
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
    if name in ("yolo26t", "yolov8t_nms"):
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
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), r.output
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)
    assert not out.exists()


# -- the other families' layouts (models/detectors/make_heads.py) --------------------------------
HEADS = {"yolov5s_head": ("yolov5", False), "yolox_raw": ("yolox", False), "detr_head": ("detr", False),
         "trt_head": ("trt", True), "torchvision_head": ("torchvision", True), "nms7_head": ("nms-7", True)}


def _canonical(boxes, scores, classes):
    """Detections in a tie-free order: score, then class and corner. The grey padding of a
    letterbox gives many cells the same score, and torch's descending argsort orders ties
    arbitrarily, so equal-score detections are compared as a set."""
    order = np.lexsort((np.round(boxes[:, 1], 2), np.round(boxes[:, 0], 2), classes, -np.round(scores, 5)))
    return boxes[order], scores[order], classes[order]


@pytest.mark.parametrize("name", sorted(HEADS))
def test_family_layout_matches_its_own_post_processing(name):
    """Each layout read from the graph alone and decoded like the family's own code: same boxes
    within 1e-3 of the input size, scores within 1e-4, same classes, in the same order."""
    kind, inside = HEADS[name]
    det = bc.Detector(DET / f"{name}.onnx")
    assert det.signature.task == "detector" and det.signature.detector.kind == kind, det.signature.task_reason
    assert det.nms_inside is inside and det.num_classes == 3
    ref = np.load(DET / f"{name}_ref.npz")
    for i, im in enumerate(ref["images"]):
        x = det.prepare(_image(str(im)))
        cand = det.candidates(x[None])
        if not inside:  # the raw head is exactly what the model returns
            raw = det._raw(x[None])
            np.testing.assert_array_equal(raw[0], ref[f"{i}_raw0"]) if name != "detr_head" else None
        got = det.select(cand)[0]
        assert len(got) == len(ref[f"{i}_scores"]) > 0
        a = _canonical(got.boxes, got.scores, got.classes)
        b = _canonical(ref[f"{i}_boxes"], ref[f"{i}_scores"], ref[f"{i}_classes"])
        np.testing.assert_allclose(a[0], b[0], atol=1e-3 * det.input_size[0])
        np.testing.assert_allclose(a[1], b[1], atol=1e-4)
        np.testing.assert_array_equal(a[2], b[2])
        if inside:  # candidates are the reported rows: one-hot class, score as objectness
            assert set(np.unique(cand.probs)) <= {0.0, 1.0}
            np.testing.assert_allclose(got.objectness, got.scores)


# -- refused in one line ---------------------------------------------------------------------------
def _with_metadata(tmp_path, name: str, **props) -> Path:
    import onnx

    m = onnx.load(str(DET / "yolov8t.onnx"))
    for p in m.metadata_props:
        if p.key in props:
            p.value = props.pop(p.key)
    onnx.helper.set_model_props(m, {**{p.key: p.value for p in m.metadata_props}, **props})
    path = tmp_path / name
    onnx.save(m, str(path))
    return path


def _unknown_detector(tmp_path) -> Path:
    """A graph that says task=detect but whose output is [1, 5, 7, 9]: no layout of ours."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("heads", TensorProto.FLOAT, [1, 5, 7, 9])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 5, 7, 9])
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["p"]), helper.make_node("Expand", ["p", "shape"], ["e"]),
             helper.make_node("Slice", ["e", "st", "en", "ax"], ["heads"])]
    inits = [shape, helper.make_tensor("st", TensorProto.INT64, [1], [0]), helper.make_tensor("en", TensorProto.INT64, [1], [5]),
             helper.make_tensor("ax", TensorProto.INT64, [1], [1])]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(m, {"author": "Ultralytics", "task": "detect"})
    path = tmp_path / "unknown.onnx"
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("case, message", [
    ("segment", "an Ultralytics segment model (an instance-segmentation head"),
    ("pose", "an Ultralytics pose model (a pose head"),
    ("unknown", "match no known detector layout; declare it in the sidecar as \"detector\""),
    ("two-inputs", "the model has 2 inputs (x0, x1)"),
])
def test_bad_models_refused_by_detect_and_verify_exit_2_nothing_written(tmp_path, case, message):
    from conftest import linear_classifier

    if case in ("segment", "pose"):
        model = _with_metadata(tmp_path, f"{case}.onnx", task=case)
    elif case == "unknown":
        model = _unknown_detector(tmp_path)
    else:
        model = linear_classifier(tmp_path / "two.onnx", inputs=2)
    import re

    with pytest.raises(BlackboxCamError, match=re.escape(message)):
        bc.open_model(model)
    out = tmp_path / "out"
    r = _cli(["detect", model, IMAGES / "rocket.jpg", "--out", out])
    lines = [ln for ln in r.output.strip().splitlines() if not ln.startswith("\x1b")]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)
    assert not out.exists()
    if case == "unknown":
        assert "'heads' [1, 5, 7, 9]" in lines[0]
    # verify refuses it the same way, before any table is written
    table = tmp_path / "t.csv"
    expect = Path(__file__).resolve().parent / "data" / "detector_vendors" / "expected_centerface_tiny.csv"
    r = _cli(["verify", model, "--expect", expect, "--table", table])
    lines = [ln for ln in r.output.strip().splitlines() if not ln.startswith("\x1b")]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.output
    assert "Traceback" not in r.output and not table.exists()


def test_sidecar_declares_a_layout(tmp_path):
    """The YOLOv5 head read as declared: the same detections as read from its graph."""
    import json
    import shutil

    model = tmp_path / "v5.onnx"
    shutil.copy(DET / "yolov5s_head.onnx", model)
    side = json.loads((DET / "yolov5s_head.json").read_text())
    (tmp_path / "v5.json").write_text(json.dumps({**side, "detector": {"kind": "yolov5", "outputs": ["output0"]}}))
    det = bc.Detector(model)
    assert det.signature.task_reason.startswith("sidecar \"detector\" declares kind 'yolov5'")
    ref = bc.Detector(DET / "yolov5s_head.onnx")
    x = ref.prepare(_image("rocket.jpg"))[None]
    np.testing.assert_array_equal(det.detect(x)[0].boxes, ref.detect(x)[0].boxes)
    (tmp_path / "v5.json").write_text(json.dumps({**side, "detector": {"kind": "yolo9"}}))
    with pytest.raises(BlackboxCamError, match="\"kind\" must be one of ultralytics, yolov5"):
        bc.Detector(model)


# -- verify ----------------------------------------------------------------------------------------
def _vendor_csv(tmp_path, name: str = "yolov8t") -> Path:
    """Ultralytics' own predictor's detections (stored) as the vendor CSV verify reads."""
    ref = np.load(DET / f"{name}_ultralytics.npz")
    names = bc.Detector(DET / f"{name}.onnx").labels
    lines = ["image,label,score,x0,y0,x1,y1"]
    for i, im in enumerate(ref["images"]):
        for b, s, c in zip(ref[f"{i}_boxes"], ref[f"{i}_scores"], ref[f"{i}_classes"]):
            lines.append(f"{IMAGES / str(im)},{names[c]},{s:.6f}," + ",".join(f"{v:.3f}" for v in b))
    p = tmp_path / "vendor.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_verify_detector_passes_on_the_vendors_own_detections(tmp_path):
    r = _cli(["verify", DET / "yolov8t.onnx", "--expect", _vendor_csv(tmp_path), "--table", tmp_path / "t.csv"])
    assert r.exit_code == 0, r.output
    assert "149 matched, 0 missed, 0 extra" in r.output and "PASS" in r.output
    assert (tmp_path / "t.csv").read_text().count("matched") == 149


@pytest.mark.parametrize("wrong, named", [({"resample": "bilinear"}, '"resample": "cv2-linear"'),
                                          ({"pad_color": [0, 0, 0]}, '"pad_color": [114, 114, 114]')])
def test_verify_detector_names_the_single_step_that_differs(tmp_path, wrong, named):
    import json
    import shutil

    model = tmp_path / "m.onnx"
    shutil.copy(DET / "yolov8t.onnx", model)
    from blackbox_cam.model.detector import ULTRALYTICS_SIDECAR

    (tmp_path / "m.json").write_text(json.dumps({**ULTRALYTICS_SIDECAR, **wrong}))
    r = _cli(["verify", model, "--expect", _vendor_csv(tmp_path), "--table", tmp_path / "t.csv"])
    assert r.exit_code == 1 and "FAIL" in r.output
    assert f"one change closes the gap" in r.output and named in r.output, r.output


def test_nms_inside_export_explained_through_its_exposed_head(tmp_path):
    """trt_head reports 100 boxes after a top-K; its YOLOv5 head before that is a tensor inside
    the graph. Declared in the sidecar, it is exposed as an output and read: the candidates are
    the whole head's (6300 boxes, the same as the bare YOLOv5 head export), not the K reported."""
    import json
    import shutil

    model = tmp_path / "trt.onnx"
    shutil.copy(DET / "trt_head.onnx", model)
    side = json.loads((DET / "trt_head.json").read_text())
    (tmp_path / "trt.json").write_text(json.dumps({**side, "detector": {"kind": "yolov5",
                                                                         "outputs": ["/v5/Concat_6_output_0"]}}))
    det = bc.Detector(model)
    assert det.nms_inside is False and "1 exposed from inside the graph" in det.signature.task_reason
    bare = bc.Detector(DET / "yolov5s_head.onnx")
    x = bare.prepare(_image("rocket.jpg"))[None]
    a, b = det.candidates(x), bare.candidates(x)
    assert a.boxes.shape == (1, 6300, 4)
    np.testing.assert_array_equal(a.probs, b.probs)
    np.testing.assert_array_equal(det.select(a)[0].boxes, bare.select(b)[0].boxes)
    (tmp_path / "trt.json").write_text(json.dumps({**side, "detector": {"kind": "yolov5", "outputs": ["nope"]}}))
    with pytest.raises(BlackboxCamError, match=r"\['nope'\] are neither outputs"):
        bc.Detector(model)


def test_ultralytics_nms_export_read_before_its_nms(tmp_path):
    """yolov8t_nms (Ultralytics nms=True: NonMaxSuppression inside, [1, 300, 6] out) read through
    its Detect head tensor: the candidates and detections of the plain export of the same weights.
    The exporter switches that head to corner boxes (``Detect.xyxy``), which the sidecar says."""
    import json
    import shutil

    from blackbox_cam.model.detector import ULTRALYTICS_SIDECAR

    model = tmp_path / "nms.onnx"
    shutil.copy(DET / "yolov8t_nms.onnx", model)
    head = "/model/model.22/Concat_3_output_0"
    (tmp_path / "nms.json").write_text(json.dumps({**ULTRALYTICS_SIDECAR,
                                                   "detector": {"kind": "ultralytics", "outputs": [head],
                                                                "box_format": "xyxy"}}))
    det, plain = bc.Detector(model), bc.Detector(DET / "yolov8t.onnx")
    assert not det.nms_inside and det.labels == plain.labels
    x = plain.prepare(_image("astronaut.png"))[None]
    a, b = det.candidates(x), plain.candidates(x)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
    assert len(det.select(a)[0]) == len(plain.select(b)[0]) == 72


# -- OpenCV's geometry (issue 26 item 4) -----------------------------------------------------------
@pytest.mark.parametrize("resample, flag", [("cv2-nearest", "INTER_NEAREST"), ("cv2-linear", "INTER_LINEAR"),
                                            ("cv2-cubic", "INTER_CUBIC"), ("cv2-area", "INTER_AREA")])
def test_cv2_filters_are_opencvs_own(resample, flag):
    import cv2

    from blackbox_cam.model.geometry import Geometry

    img = np.asarray(Image.open(IMAGES / "rocket.jpg").convert("RGB"))
    geo = Geometry(mode="squash", resample=resample, uint8=True)
    got, _ = geo.to_input(img, (200, 300))
    want = cv2.resize(img, (300, 200), interpolation=getattr(cv2, flag))
    np.testing.assert_array_equal(got, want.astype(np.float32))
    assert resample in geo.describe()


def test_pad_anchor_top_left_is_copymakeborder_then_blobfromimage():
    """OpenCV DNN samples: resize the longer side, pad right and bottom, blobFromImage(1/255, swapRB)."""
    import cv2

    from blackbox_cam.model.geometry import Geometry
    from blackbox_cam.model.sidecar import translate

    img = np.asarray(Image.open(IMAGES / "rocket.jpg").convert("RGB"))
    pipe = translate({"preprocess": "unit", "resize": "letterbox", "resample": "cv2-linear", "uint8_resize": True,
                      "pad_color": [0, 0, 0], "pad_anchor": "top-left"})
    geo = Geometry(**pipe.geometry)
    got, pl = geo.to_input(img, (320, 320))
    bgr = img[..., ::-1]
    nh = round(427 * 320 / 640)  # 214: the shorter side rounded, as Ultralytics' letterbox rounds it
    small = cv2.resize(bgr, (320, nh), interpolation=cv2.INTER_LINEAR)
    padded = cv2.copyMakeBorder(small, 0, 320 - nh, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    blob = cv2.dnn.blobFromImage(padded, 1 / 255.0, (320, 320), swapRB=True)
    np.testing.assert_allclose(got.transpose(2, 0, 1)[None] / 255.0, blob, atol=1e-7)
    assert pl.inner == (0, 0, nh, 320)


def test_missing_opencv_named_in_one_line(monkeypatch):
    import builtins

    from blackbox_cam.model.geometry import Geometry

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "cv2" else real(name, *a, **k))
    with pytest.raises(BlackboxCamError, match=r"needs OpenCV: pip install 'blackbox-cam\[opencv\]'"):
        Geometry(resample="cv2-linear").to_input(np.zeros((10, 10, 3), np.uint8), (5, 5))


def test_sidecar_refuses_bad_geometry_keys():
    from blackbox_cam.model.sidecar import translate

    with pytest.raises(BlackboxCamError, match='"pad_anchor" must be one of center, top-left'):
        translate({"pad_anchor": "bottom"})
    with pytest.raises(BlackboxCamError, match="or OpenCV's cv2-nearest, cv2-linear"):
        translate({"resample": "cv2-lanczos"})


def test_nms_per_class_loop_equals_the_offset_trick_over_all_boxes():
    """The per-class greedy loop keeps exactly what one greedy pass over the offset boxes keeps."""
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 600, (3000, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 150, (3000, 2)).astype(np.float32)], 1)
    probs = (rng.uniform(0, 1, (3000, 7)) ** 3).astype(np.float32)
    obj = rng.uniform(0.5, 1, 3000).astype(np.float32)
    for conf, max_det in ((0.25, 300), (0.01, 3000)):
        idx, scores, classes = non_max_suppression(boxes, probs, obj, conf=conf, max_det=max_det)
        s = probs.max(1) * obj
        keep = np.flatnonzero(s > conf)
        shifted = boxes[keep] + probs[keep].argmax(1)[:, None].astype(np.float32) * np.float32(7680)
        want = keep[greedy_nms(shifted, s[keep], 0.45, max_det)]
        np.testing.assert_array_equal(idx, want)
    idx, _, _ = non_max_suppression(boxes, probs, obj, agnostic=True)
    keep = np.flatnonzero(probs.max(1) * obj > 0.25)
    np.testing.assert_array_equal(idx, keep[greedy_nms(boxes[keep], (probs.max(1) * obj)[keep], 0.45, 300)])


@pytest.mark.parametrize("resize, crop_pct", [("squash", None), ("crop", 0.5)])
def test_to_image_boxes_inverts_squash_and_crop(resize, crop_pct):
    """A box drawn on the model input lands where prepare() took those pixels from."""
    det = bc.Detector(DET / "yolov8t.onnx", resize=resize, crop_pct=crop_pct)
    h, w = 427, 640
    pl = det.geometry.place((h, w), det.input_size)
    x0, y0, x1, y1 = pl.box
    whole = np.array([[0.0, 0.0, det.input_size[1], det.input_size[0]]])
    np.testing.assert_allclose(det.to_image_boxes(whole, (h, w)), [[x0, y0, x1, y1]], atol=1e-3)
    if resize == "crop":
        assert 0 < x0 < x1 < w  # the crop keeps the middle: the input's edges are inside the image


def test_detect_takes_arrays_pil_images_and_lists():
    img = Image.open(IMAGES / "rocket.jpg").convert("RGB")
    det = bc.Detector(DET / "yolov8t.onnx")
    a = bc.detect(det, img)
    b = bc.detect(det, np.asarray(img))
    many = bc.detect(det, [IMAGES / "rocket.jpg", np.asarray(img)], progress=False)
    assert len(many) == 2 and a.source is None
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(many[0].boxes, a.boxes)
    with pytest.raises(BlackboxCamError, match="pass them to Detector"):
        bc.detect(det, img, resize="squash")


def test_reader_without_metadata_needs_the_grid_to_match(tmp_path):
    """Metadata stripped, a YOLOv8 head is still read from its [1, 4+C, anchors] shape because the
    anchors are the input's 8/16/32 grid cells; a [1, 10, 1000] output (ten-crop scores) is not."""
    import onnx
    from onnx import TensorProto, helper

    from blackbox_cam.model.signature import read_model

    m = onnx.load(str(DET / "yolov8t.onnx"))
    del m.metadata_props[:]
    sig = read_model(m)
    assert sig.task == "detector" and sig.detector.kind == "ultralytics" and sig.detector.num_classes == 20
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 320, 320])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10, 1000])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    assert read_model(helper.make_model(g)).task == "classifier"


def test_layers_and_backend_line_say_the_task(tmp_path):
    r = _cli(["layers", DET / "yolov8t.onnx"])
    assert "# task: detector: output 'output0' [1, 24, 2100] and metadata task=detect" in r.output
    r = _cli(["layers", ROOT / "models" / "efficientnet_lite0.onnx"])
    assert "# task: classifier: output 'logits'" in r.output
    r = _cli(["detect", DET / "yolov8t.onnx", IMAGES / "rocket.jpg", "--out", tmp_path / "o"])
    assert any(ln.startswith("backend: ") and ", detector (ultralytics)" in ln for ln in r.output.splitlines())
