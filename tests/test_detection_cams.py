"""Grad-CAM per detection and EigenCAM from the ONNX graph, against pytorch-grad-cam (issue 27).

References in tests/data/detection_gradcam/ were made by pytorch-grad-cam 1.5.7 on the Ultralytics
torch model the ONNX file was exported from, with a target ``output[4 + class, candidate]`` per
image at each level's neck map (see make_reference.py there). The stored maps are every 7th pixel
of the 320 x 320 maps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.methods import METHODS, gradcam
from blackbox_cam.methods._detgrad import CandidateTarget, candidate_target
from blackbox_cam.methods.eigencam import eigen_cams, eigen_projection, renormalise_in_box
from blackbox_cam.model.open import open_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "detection_gradcam"
YOLO = DATA / "yolov8_tiny.onnx"
NMS_INSIDE = ROOT / "models" / "detectors" / "yolo26t.onnx"  # Ultralytics end2end: [1, 300, 6]
FAMILY = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"]
S = 7  # the stored maps' pixel stride
TOL = 1e-4


@pytest.fixture(scope="module")
def ref():
    return np.load(DATA / "yolov8_tiny.npz")


@pytest.fixture(scope="module")
def det():
    return open_model(YOLO)


@pytest.fixture(scope="module")
def x(ref):
    return ref["pixels"].astype(np.float32) / 255


def _targets(ref, level: int, with_box: bool = False) -> list[CandidateTarget]:
    return [CandidateTarget(int(ref["candidates"][b, level]), int(ref["classes"][b, level]),
                            tuple(float(v) for v in ref["box"][b, level]) if with_box else None)
            for b in range(len(ref["pixels"]))]


# --------------------------------------------------------------------------- the head's levels


def test_levels_are_the_detect_heads_inputs(det, ref):
    """P3/P4/P5 with their grids, candidate ranges and strides; each level's neck map is the
    output of the module Ultralytics' Detect reads (``model.15/18/21`` in yolov8.yaml)."""
    levels = gradcam.detector_levels(det)
    assert [(l.name, l.h, l.w, l.first, l.count) for l in levels] == [
        ("P3/8", 40, 40, 0, 1600), ("P4/16", 20, 20, 1600, 400), ("P5/32", 10, 10, 2000, 100)]
    assert [l.neck for l in levels] == [f"/{m}/cv2/act/Mul_output_0" for m in ref["level_modules"]]
    assert levels[1].cell(1600 + 2 * 20 + 5) == (2, 5, 0)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_auto_layer_is_the_neck_map_of_the_candidates_level(det, ref, level):
    cand = int(ref["candidates"][0, level])
    info, lv = gradcam.detection_layer(det, cand, "auto")
    assert lv.holds(cand) and info.name == lv.neck and lv.index == level


def test_the_scores_are_the_models_own(det, ref, x):
    """The candidates the references explain, read through the Detector: same class probabilities."""
    cand = det.candidates(x)
    got = cand.probs[np.arange(len(x))[:, None], ref["candidates"], ref["classes"]]
    np.testing.assert_allclose(got, ref["scores"], atol=1e-5)


# --------------------------------------------------------------------------- Grad-CAM per detection


@pytest.mark.parametrize("method", FAMILY)
def test_gradcam_family_per_detection_matches_pytorch_grad_cam(det, ref, x, method):
    """Every level, every image: the map of one candidate's class probability at the neck map of
    its level equals pytorch-grad-cam's with a target picking the same candidate (1e-4)."""
    for level, name in enumerate(ref["levels"]):
        ours = gradcam.detection_cams(det, x, _targets(ref, level), method=method)
        gap = float(np.abs(ours[:, ::S, ::S] - ref[f"cam/{name}/{method}"]).max())
        assert gap <= TOL, f"{method} at {name}: max gap {gap:.2e}"


def test_mixed_levels_in_one_batch_run_per_level(det, ref, x):
    """One batch whose detections come from three levels: each at its own neck map."""
    targets = [_targets(ref, level)[b] for b, level in enumerate((0, 1, 2))]
    ours = gradcam.detection_cams(det, x, targets, method="gradcam")
    for b, level in enumerate((0, 1, 2)):
        want = ref[f"cam/{ref['levels'][level]}/gradcam"][b]
        assert np.abs(ours[b, ::S, ::S] - want).max() <= TOL


def test_a_named_layer_is_taken_as_given(det, ref, x):
    """``--layer`` names the map: the P3 neck for a P4 candidate (the P3 map feeds P4 through
    the PAN's down-sampling path) gives another map, and the record says both."""
    p3 = gradcam.detector_levels(det)[0].neck
    t = _targets(ref, 1)[0]
    own = gradcam.detection_cams(det, x[:1], [t], method="hirescam")[0]
    out = METHODS["hirescam"].hook(det, x[0], t, budget=None, seed=0, score=0.0, layer=p3)
    assert out.params["layer"] == p3 and out.params["level"] == "P4/16"
    assert out.saliency.max() > 0.5 and np.abs(own - out.saliency).max() > 0.1


def test_hook_explains_a_reported_detection(det, x):
    """Through the registry's hook: a detection of ``Detector.detect`` (its candidate index)
    gives the map of its candidate and says which level, cell and layer."""
    found = det.detect(x[:1])[0]
    k = int(np.argmax(found.scores))
    t = CandidateTarget(int(found.candidate[k]), int(found.classes[k]), tuple(found.boxes[k]))
    out = METHODS["gradcam"].hook(det, x[0], t, budget=None, seed=0, score=float(found.scores[k]), layer="auto")
    want = gradcam.detection_cams(det, x[:1], [t], method="gradcam")[0]
    np.testing.assert_array_equal(out.saliency, want)
    level = gradcam._gradients().level_of(gradcam.detector_levels(det), t.candidate)
    assert out.params["candidate"] == t.candidate and out.params["level"] == level.name
    assert out.params["layer"] == level.neck and out.params["cell"] == list(level.cell(t.candidate))


class _Detection:
    """A single-detection target as the method contract hands it over (kind, boxes, classes)."""

    kind = "detection"

    def __init__(self, box, cls, candidates=None):
        self.boxes, self.classes = np.asarray([box], float), np.asarray([cls])
        if candidates is not None:
            self.candidates = np.asarray([candidates])


def test_a_detection_target_without_candidate_takes_the_best_overlapping_one(det, x):
    """A box the model did not report: the candidate with the largest IoU x p(class) there."""
    cand = det.candidates(x[:1])
    a, c = 1234, 3
    box = tuple(float(v) for v in cand.boxes[0, a])
    t = candidate_target(det, x[0], _Detection(box, c))
    fit = [(_iou(box, b) * p) for b, p in zip(cand.boxes[0], cand.probs[0, :, c])]
    assert t.candidate == int(np.argmax(fit)) and t.cls == c
    assert candidate_target(det, x[0], _Detection(box, c, candidates=a)).candidate == a


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / u if u > 0 else 0.0


# --------------------------------------------------------------------------- other heads

HEADS = ROOT / "models" / "detectors"
DETR_LAYER = "/body/p5/p5.1/Mul_output_0"  # the DETR head reads the backbone's P5 (no levels)


@pytest.mark.parametrize("head", ["yolov5s_head", "yolox_raw", "detr_head"])
def test_other_heads_per_detection_match_pytorch_grad_cam(head):
    """YOLOv5 (objectness x class, 3 anchors a cell), YOLOX raw (the same score, levels concatenated
    on another axis than the candidates') and DETR (softmax without the no-object slot): the score
    head appended to the graph gives pytorch-grad-cam's maps with a target computing the decoder's
    score (tests/data/detection_gradcam/heads.npz), every method, every level, within 1e-4."""
    r = np.load(DATA / "heads.npz")
    x = r["pixels"].astype(np.float32) / 255
    det = open_model(HEADS / f"{head}.onnx")
    for level, module in enumerate(r[f"{head}/layers"]):
        targets = [CandidateTarget(int(r[f"{head}/candidates"][b, level]), int(r[f"{head}/classes"][b, level]))
                   for b in range(len(x))]
        for method in FAMILY:
            ours = gradcam.detection_cams(det, x, targets, method=method,
                                          layer=DETR_LAYER if head == "detr_head" else "auto")
            ref = r[f"{head}/cam/{module}/{method}"]
            gap = float(np.abs(ours[:, ::11, ::11] - ref).max())
            assert gap <= TOL, f"{head} {module} {method}: {gap:.2e}"
    for method in FAMILY:  # not a comparison of blank maps only
        assert any(r[f"{head}/cam/{m}/{method}"].max() > 0.5 for m in r[f"{head}/layers"]), method


def test_the_score_head_says_what_it_differentiates():
    v5 = open_model(HEADS / "yolov5s_head.onnx")
    x = np.load(DATA / "heads.npz")["pixels"][:1].astype(np.float32) / 255
    out = METHODS["gradcam"].hook(v5, x[0], CandidateTarget(5300, 2), budget=None, seed=0, score=0.0, layer="auto")
    assert out.params["differentiated"].startswith("objectness x class probability")
    assert out.params["level"] == "P4/16" and out.params["cell"][2] in (0, 1, 2)


# --------------------------------------------------------------------------- EigenCAM


@pytest.mark.parametrize("sign", ["svd", "peak"])
def test_eigencam_at_each_neck_matches_pytorch_grad_cam(det, ref, x, sign):
    """``svd``: pytorch-grad-cam's EigenCAM (LAPACK's sign); ``peak``: its Seg-Eigen-CAM sign
    correction (flipped when |min| > |max|), both within 1e-4 at every level."""
    for level, name in enumerate(ref["levels"]):
        ours = eigen_cams(det, x, layer=gradcam.detector_levels(det)[level].neck, sign=sign)
        gap = float(np.abs(ours[:, ::S, ::S] - ref[f"eigen/{name}/{sign}"]).max())
        assert gap <= TOL, f"eigencam {sign} at {name}: {gap:.2e}"


def test_the_two_signs_differ_where_lapack_disagrees_with_the_peak_rule(ref):
    """The reference has both cases: the sign matters, and --sign peak fixes it."""
    flips = [np.abs(ref[f"eigen/{n}/svd"][b] - ref[f"eigen/{n}/peak"][b]).max() > 1e-3
             for n in ref["levels"] for b in range(len(ref["pixels"]))]
    assert any(flips) and not all(flips)


def test_peak_sign_makes_the_largest_magnitude_positive():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((2, 6, 5, 4)).astype(np.float32)
    for s in (1, -1):
        p = eigen_projection(s * A, sign="peak")
        assert all(abs(q.max()) >= abs(q.min()) for q in p)
    np.testing.assert_allclose(eigen_projection(A, sign="peak"), eigen_projection(-A, sign="peak"), atol=1e-5)


def test_eigencam_in_box_matches_the_yolo_tutorial(det, ref, x):
    """``--in-box``: the map min-max normalised inside the detection's box, zero outside (the
    tutorial's renormalisation), through the registry's hook with the candidate's level."""
    for level, name in enumerate(ref["levels"]):
        for b, t in enumerate(_targets(ref, level, with_box=True)):
            out = METHODS["eigencam"].hook(det, x[b], t, budget=None, seed=0, score=0.0, layer="auto",
                                           sign="peak", in_box=True)
            assert np.abs(out.saliency[::S, ::S] - ref[f"eigen/{name}/box"][b]).max() <= TOL
            x0, y0, x1, y1 = out.params["box_pixels"]
            outside = np.ones(out.saliency.shape, bool)
            outside[y0:y1, x0:x1] = False
            assert not out.saliency[outside].any()


def test_renormalise_in_an_empty_box_is_all_zero():
    assert not renormalise_in_box(np.random.default_rng(0).random((8, 8), np.float32), (5, 5, 5, 7)).any()


def test_eigencam_on_a_classifier_matches_pytorch_grad_cam():
    """Class-blind on a classifier too (tests/data/gradcam_reference's resnetish)."""
    from blackbox_cam.model.runtime import Classifier

    r = np.load(DATA / "resnetish_eigencam.npz")
    clf = Classifier(ROOT / "tests" / "data" / "gradcam_reference" / "resnetish.onnx")
    for layer, tensor in zip(r["layers"], r["layer_tensors"]):
        for sign in ("svd", "peak"):
            ours = eigen_cams(clf, r["x"], layer=str(tensor), sign=sign)
            assert np.abs(ours - r[f"eigen/{layer}/{sign}"]).max() <= TOL, (layer, sign)
    out = METHODS["eigencam"].run(clf, r["x"][0], 3)
    np.testing.assert_allclose(out.saliency, eigen_cams(clf, r["x"][:1], layer=out.params["layer"])[0], atol=1e-6)


# --------------------------------------------------------------------------- refusals, one line each


def test_in_box_on_a_classifier_is_refused_before_any_image():
    from blackbox_cam.methods import bind_all
    from blackbox_cam.model.runtime import Classifier

    clf = Classifier(ROOT / "tests" / "data" / "gradcam_reference" / "resnetish.onnx")
    with pytest.raises(BlackboxCamError, match="--in-box .* needs a detector"):
        bind_all(["eigencam"], options={"in_box": True}, clf=clf)


def test_a_head_with_nms_inside_is_refused_by_name():
    """An end2end export's candidates come after NMS: no score element to differentiate, no levels."""
    from blackbox_cam.methods import bind_all

    nms = open_model(NMS_INSIDE)
    with pytest.raises(BlackboxCamError, match="nms-6 head .* use drise, decam or occlusion"):
        bind_all(["gradcam"], clf=nms)
    with pytest.raises(BlackboxCamError, match="levels of this detector's head are not plain"):
        bind_all(["eigencam"], clf=nms)


def test_eigencam_runs_on_a_head_with_nms_inside_at_a_named_layer(x):
    """EigenCAM needs only a map: an end2end export (no score element, no levels) with --layer."""
    from blackbox_cam.methods import bind_all

    nms = open_model(NMS_INSIDE)
    layer = "/model.22/cv2/act/Mul_output_0"  # yolo26.yaml's P5 neck, the one2one head's input
    bind_all(["eigencam"], options={"layer": layer}, clf=nms)
    found = nms.detect(x[:1])[0]
    t = CandidateTarget(int(found.candidate[0]), int(found.classes[0]), tuple(found.boxes[0]))
    out = METHODS["eigencam"].hook(nms, x[0], t, budget=None, seed=0, score=0.0, layer=layer)
    np.testing.assert_allclose(out.saliency, eigen_cams(nms, x[:1], layer=layer)[0], atol=1e-6)
    assert out.params["layer"] == layer and out.saliency.max() > 0.5


def test_a_layer_that_is_not_a_map_is_refused(det):
    from blackbox_cam.methods import bind_all

    with pytest.raises(BlackboxCamError, match="not a layer of this model"):
        bind_all(["gradcam"], options={"layer": "/model.15/cv2/act/Mul_nope"}, clf=det)


def test_a_candidate_outside_the_output_is_refused(det, x):
    with pytest.raises(BlackboxCamError, match="no level of the head holds it"):
        gradcam.detection_cams(det, x[:1], [CandidateTarget(5000, 0)])


# --------------------------------------------------------------------------- blackbox-cam layers


def test_layers_says_where_a_detectors_candidates_come_from(det):
    from blackbox_cam.cli import main

    res = CliRunner().invoke(main, ["layers", str(YOLO)])
    assert res.exit_code == 0, res.output
    for level in gradcam.detector_levels(det):
        assert f"#   {level.describe()}, stride {level.stride:g}: {level.neck}" in res.output
        row = next(r for r in res.output.splitlines() if r.startswith(f"* {level.neck}\t"))
        assert f"neck {level.name}" in row
    assert "no default layer" not in res.output


def test_a_graph_whose_nodes_are_out_of_order_is_read_the_same():
    """Regression (issue 27): onnxconverter-common's float16 conversion appends the input's Cast
    at the end of the node list (ONNX Runtime does not mind); every walk of the graph read one
    layer. prepare_model sorts the nodes first."""
    import onnx

    from blackbox_cam.gradients import candidate_layers, prepare_model

    model = onnx.load(str(YOLO))
    k = next(i for i, n in enumerate(model.graph.node) if n.op_type == "Conv")  # reads the image
    first = onnx.NodeProto()
    first.CopyFrom(model.graph.node[k])
    del model.graph.node[k]
    model.graph.node.append(first)
    want = {l.name for l in candidate_layers(prepare_model(str(YOLO)))}
    assert {l.name for l in candidate_layers(prepare_model(model))} == want and len(want) > 100
