"""Issue 27, black-box side: targets (class / detection), T maps from one query set, drise, explain on
a detector (records, files, bad input), per-detection metrics.

The detector is the planted-cue detector (models/planted_detector.py: an Ultralytics-layout head,
128 x 128) and its held-out scenes; the D-RISE reference was made by xaitk-saliency 0.15.0
(tests/data/detection_maps/make_xaitk_reference.py), so these tests need no xaitk.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam.cli import main as cli
from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.explainer.detection_maps import choose_targets, explain_detections, score_detections
from blackbox_cam.methods import METHODS, ClassTarget, DetectionTarget
from blackbox_cam.methods.targets import box_iou, candidate_objectness, drise_similarity
from blackbox_cam.metrics.detection import (detection_deletion, energy_per_detection,
                                            pointing_per_detection)
from blackbox_cam.model.detector import Detector

ROOT = Path(__file__).resolve().parents[1]
PLANTED = ROOT / "models/planted_detector/planted_detector.onnx"
HELDOUT = ROOT / "models/planted_detector/heldout.npz"
XAITK = ROOT / "tests/data/detection_maps/xaitk_drise.npz"
SCENE = 6  # a held-out scene with three detections of both classes (the xaitk reference's)


@pytest.fixture(scope="module")
def det():
    return Detector(PLANTED, device="cpu")


@pytest.fixture(scope="module")
def held():
    return np.load(HELDOUT)


@pytest.fixture(scope="module")
def scene(det, held):
    """Held-out scene 6 scored once (the scene the xaitk reference was made on)."""
    return score_detections(det, held["images"][SCENE].astype(np.float32))


@pytest.fixture()
def scene_png(tmp_path, held):
    p = tmp_path / "scene.png"
    Image.fromarray(held["images"][SCENE]).save(p)
    return p


# -- the scoring rule ------------------------------------------------------------------------------
def test_drise_similarity_is_iou_times_cosine_times_objectness_best_over_candidates():
    """Petsiuk et al. 2021, Eq. 1-2, written out with loops on random detections."""
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 40, (3, 2))
    t_boxes = np.concatenate([corner, corner + rng.uniform(5, 30, (3, 2))], axis=1)  # x0, y0, x1, y1
    t_probs = rng.random((3, 4))
    c_boxes = t_boxes[rng.integers(0, 3, (2, 7))] + rng.normal(0, 3, (2, 7, 4))
    c_probs, c_obj = rng.random((2, 7, 4)), rng.random((2, 7))
    got = drise_similarity(t_boxes, t_probs, c_boxes, c_probs, c_obj)

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + max(b[2] - b[0], 0) * max(b[3] - b[1], 0) - w * h)

    for n in range(2):
        for t in range(3):
            want = max(iou(t_boxes[t], c_boxes[n, j]) * t_probs[t] @ c_probs[n, j]
                       / np.linalg.norm(t_probs[t]) / np.linalg.norm(c_probs[n, j]) * c_obj[n, j] for j in range(7))
            assert got[n, t] == pytest.approx(want, abs=1e-12)


def test_without_objectness_the_best_class_probability_stands_in(det, scene):
    """An Ultralytics head has no objectness (1 everywhere): the similarity's O_j is the
    candidate's best class probability, so a faint class vector does not count as a detection."""
    cand = scene.candidates
    assert np.all(cand.objectness == 1.0)
    np.testing.assert_array_equal(candidate_objectness(cand), cand.probs.max(axis=-1))


def test_a_detection_scores_its_own_confidence_on_the_unmasked_image(det, scene):
    t = choose_targets(det, scene)
    assert t.count >= 1
    np.testing.assert_allclose(t.score_candidates(scene.candidates)[0], t.confidences, atol=1e-6)


# -- one query set for every target ---------------------------------------------------------------
@pytest.mark.parametrize("method, budget", [("rise", 120), ("occlusion", 60), ("drise", 120)])
def test_several_targets_give_each_targets_own_map_from_the_same_queries(det, scene, method, budget):
    """T maps from one query set equal the T maps made one target at a time (same masks: same
    seed), and the joint run costs the queries of one."""
    t = choose_targets(det, scene)
    call = METHODS[method].bind(budget, det.input_size)
    q0 = det.queries
    joint = call.run_targets(det, scene.x, t, seed=3)
    spent = det.queries - q0
    assert spent == joint[0].queries <= budget and all(e.queries == spent for e in joint)
    for k in range(t.count):
        alone = call.run_targets(det, scene.x, t.one(k), seed=3)[0]
        np.testing.assert_allclose(joint[k].saliency, alone.saliency, atol=1e-6)
        assert joint[k].detection.boxes.tolist() == t.boxes[k:k + 1].tolist()


def test_a_class_index_still_runs_every_method_as_before(det):
    """An int target and a one-class ClassTarget are the same call (every existing caller)."""
    from blackbox_cam.model.runtime import Classifier
    clf = Classifier(ROOT / "models/planted/planted.onnx", device="cpu")
    x = clf.prepare(np.load(ROOT / "models/planted/heldout.npz")["images"][0].astype(np.float32))
    for m, b in (("rise", 60), ("decam", 60), ("occlusion", 40)):
        a = METHODS[m].fn(clf, x, 2, budget=b, seed=1)
        c = METHODS[m].bind(b, clf.input_size).run_targets(clf, x, ClassTarget((2,)), seed=1)[0]
        np.testing.assert_array_equal(a.saliency, c.saliency)
        assert a.queries == c.queries and a.target == c.target == 2


def test_decam_explains_several_detections_with_one_search(det, scene):
    t = choose_targets(det, scene)
    call = METHODS["decam"].bind(200, det.input_size)
    out = call.run_targets(det, scene.x, t, seed=0)
    assert len(out) == t.count and out[0].queries <= 200
    assert out[0].extra["search"]["targets"] == t.count
    assert all(e.saliency.shape == tuple(det.input_size) for e in out)


def test_decam_pair_scorer_scores_every_detection_as_mask_scorer_does(scene):
    """DE-CAM's PairScorer (masks kept and removed in one stream of near-equal batches, the next
    batch composed by a worker thread) only reorders MaskScorer's work: the same ``[n, T]`` D-RISE
    scores image for image, with the pipeline and without, across different batch cuts."""
    from blackbox_cam.methods.decam import PairScorer
    from blackbox_cam.methods.perturb import MaskScorer
    small = Detector(PLANTED, device="cpu", batch_size=5)  # 26 images: 6 calls of 4-5, against 5, 5, 3 twice
    t = choose_targets(small, scene)
    rng = np.random.default_rng(0)
    masks = (rng.random((13, 6, 6)) > 0.5).astype(np.float32)
    cell = (small.input_size[0] / 5, small.input_size[1] / 5)
    offsets = np.floor(rng.random((13, 2)) * cell)
    base = np.zeros_like(scene.x)
    ref = MaskScorer(small, scene.x, base, t)
    keep_ref, drop_ref = ref(masks, cell, offsets), ref(masks, cell, offsets, invert=True)
    assert keep_ref.shape == (13, t.count) and t.count >= 2
    assert not np.array_equal(keep_ref, drop_ref)
    for pipeline in (True, False):
        pair = PairScorer(small, scene.x, base, t, pipeline=pipeline)
        try:
            keep, drop = pair(masks, cell, offsets)
        finally:
            pair.close()
        np.testing.assert_array_equal(keep, keep_ref)
        np.testing.assert_array_equal(drop, drop_ref)


def test_decam_auto_reads_the_least_stable_targets_clipped_halves():
    """``--budget auto`` with several targets: the target whose *clipped* halves (what its map
    shows; Rounds.settled_shown, issue 30) agree least decides. Target 1's halves agree wherever
    they are positive and differ only in negative cells the map clips away; target 0's differ a
    little everywhere. Unclipped, target 1 looks the less stable; clipped, target 0 is."""
    from types import SimpleNamespace
    from blackbox_cam.methods.decam import _Search
    from blackbox_cam.methods.uncertainty import AutoBudget, Rounds, reliability
    rng = np.random.default_rng(0)
    r = 10
    pos, keep = rng.random((r, r)) + 0.1, rng.random((r, r)) < 0.5
    a1, b1 = (np.where(keep, pos, -3 * rng.random((r, r))) for _ in range(2))
    q = rng.random((r, r))
    a0, b0 = q + 0.3 * rng.random((r, r)), q + 0.3 * rng.random((r, r))
    clip = lambda m: np.maximum(m, 0.0)  # noqa: E731
    assert reliability(a1, b1) < reliability(a0, b0)                       # unclipped: target 1 worst
    assert reliability(clip(a0), clip(b0)) < reliability(clip(a1), clip(b1)) == 1.0  # clipped: target 0
    stub = SimpleNamespace(t=2, half_maps=lambda: (np.stack([a0, a1]), np.stack([b0, b1])),
                           clf=SimpleNamespace(queries=1099), q0=99)
    rounds = Rounds(AutoBudget(0.9), 2000)
    assert _Search.settled(stub, rounds)  # 1000 queries >= a quarter of 2000, stability >= 0.8
    assert rounds.history == [(1001, round(reliability(clip(a0), clip(b0)), 4))]
    assert "clipped halves" in rounds.reason


def test_a_method_that_does_not_explain_detections_says_which_do(det, scene):
    t = choose_targets(det, scene).one(0)
    with pytest.raises(BlackboxCamError, match="rollout does not explain a detection; choose from"):
        METHODS["rollout"].bind(None, det.input_size).run_targets(det, scene.x, t)


# -- drise against xaitk-saliency ----------------------------------------------------------------------
def test_drise_equals_xaitk_drise_scoring_on_the_same_masks_and_detections(det, scene):
    """xaitk-saliency 0.15.0's ``DRISEScoring.generate`` on drise's own masks and candidates
    (tests/data/detection_maps/make_xaitk_reference.py): our raw map / max |raw| equals it."""
    ref = np.load(XAITK)
    t = choose_targets(det, scene)
    np.testing.assert_allclose(t.boxes, ref["boxes"], atol=1e-4)
    # the reference's candidates were recorded on black-filled masks (make_xaitk_reference.py: BASELINE)
    out = METHODS["drise"].bind(int(ref["budget"]), det.input_size, baseline="zeros").run_targets(
        det, scene.x, t, seed=int(ref["seed"]), scores=t.score_candidates(scene.candidates)[0])
    for k, e in enumerate(out):
        raw = e.extra["raw"].astype(np.float64)
        np.testing.assert_allclose(raw / np.abs(raw).max(), ref["xaitk"][k], atol=1e-6)


def test_drise_streams_its_masks(det, scene):
    """Masks are drawn, scored and dropped one batch at a time: the scoring buffer holds one
    batch whatever the number of masks."""
    from blackbox_cam.methods.perturb import MaskScorer
    s = MaskScorer(det, scene.x, np.zeros_like(scene.x), choose_targets(det, scene), limit=100000)
    assert s._buf.nbytes <= 32 * 2 ** 20


# -- explain on a detector ---------------------------------------------------------------------------
def test_explain_writes_one_map_and_record_per_detection(tmp_path, det, scene, scene_png):
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["explain", str(PLANTED), str(scene_png), "-m", "drise,occlusion", "--budget", "60",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    recs = json.loads((out / "explain.json").read_text())
    k = len(scene)
    assert len(recs) == 2 * k
    for rec in recs:
        d = rec["detection"]
        assert rec["box"] == pytest.approx(scene.image_boxes[d].tolist(), abs=1e-3)
        assert rec["class"] == int(scene.detections.classes[d]) and rec["label"] in ("red_tag", "blue_tag")
        assert rec["score"] == pytest.approx(float(scene.detections.scores[d]), abs=1e-5)
        assert rec["png"] == f"scene_{rec['method']}_det{d}.png" and rec["queries"] <= 60
        m = np.load(out / rec["npy"])
        assert m.shape == (128, 128)
        with Image.open(out / rec["png"]) as im:
            assert im.size == (128, 128)


def test_explain_one_detection_and_a_missed_box(tmp_path, det, scene, scene_png, held):
    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["explain", str(PLANTED), str(scene_png), "-m", "drise", "--budget", "40",
                                 "--detection", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    recs = json.loads((out / "explain.json").read_text())
    assert [x["detection"] for x in recs] == [0]
    box = ",".join(str(int(v)) for v in held["boxes"][SCENE, 0])
    r = CliRunner().invoke(cli, ["explain", str(PLANTED), str(scene_png), "-m", "drise", "--budget", "40",
                                 "--box", box, "--target", "blue_tag", "--out", str(out)])
    assert r.exit_code == 0, r.output
    virt = [x for x in json.loads((out / "explain.json").read_text()) if x.get("reported") is False]
    assert len(virt) == 1 and virt[0]["detection"] is None and virt[0]["label"] == "blue_tag"
    assert virt[0]["png"] == "scene_drise_box.png" and virt[0]["box"] == [float(v) for v in box.split(",")]


def test_an_image_with_no_detection_is_recorded_not_a_crash(tmp_path):
    p = tmp_path / "grey.png"
    Image.fromarray(np.full((128, 128, 3), 128, np.uint8)).save(p)
    r = CliRunner().invoke(cli, ["explain", str(PLANTED), str(p), "-m", "drise", "--budget", "20",
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "no detection above --conf 0.25: nothing to explain" in r.output
    rec = json.loads((tmp_path / "o" / "explain.json").read_text())
    assert rec[0]["detections"] == 0 and "nothing to explain" in rec[0]["warning"]


@pytest.mark.parametrize("args, code, line", [
    (["--box", "1,2,3", "--target", "red_tag"], 2, "--box '1,2,3' is not four numbers"),
    (["--box", "5,5,5,9", "--target", "red_tag"], 2, "--box 5,5,5,9 is empty"),
    (["--box", "0,0,9000,10", "--target", "red_tag"], 1, "is outside the image (128 x 128 pixels"),
    (["--box", "0,0,10,10"], 2, "--box needs --target LABEL"),
    (["--target", "zebra"], 2, "--target 'zebra' is not a class label"),
    (["--detection", "99"], 1, "--detection 99 is beyond the count: the image has"),
    (["--conf", "-1"], 2, "--conf must be in [0, 1]"),
])
def test_bad_detection_input_is_one_line(tmp_path, scene_png, args, code, line):
    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["explain", str(PLANTED), str(scene_png), "-m", "drise", "--budget", "20",
                                 "--out", str(out), *args])
    assert r.exit_code == code, r.output
    assert line in r.output and "Traceback" not in r.output
    if code == 2:
        assert not out.exists()


def test_bc_explain_returns_a_result_per_detection_with_its_box(det, held, scene):
    import blackbox_cam as bc
    res = bc.explain(det, held["images"][SCENE], "drise", budget=40)
    assert len(res) == len(scene)
    for r, b in zip(res, scene.image_boxes):
        assert r.box == pytest.approx(tuple(b), abs=1e-4) and r.saliency.shape == (128, 128)
        assert r.overlay().size == (128, 128) and "#" in r.caption()


# -- metrics ---------------------------------------------------------------------------------------
def test_per_detection_metrics(det, scene, held):
    t = choose_targets(det, scene)
    res = explain_detections(det, scene, METHODS["occlusion"].bind(80, det.input_size), t)
    maps = [r.saliency for r in res]
    cues = [held["cues"][SCENE][int(np.argmax(box_iou(b[None], held["boxes"][SCENE, :held["count"][SCENE]])[0]))]
            for b in scene.image_boxes]
    hits = pointing_per_detection(maps, cues, tolerance=4)
    energy = energy_per_detection(maps, cues)
    assert hits.shape == energy.shape == (t.count,) and np.all((energy >= 0) & (energy <= 1))
    curve = detection_deletion(lambda b: t.scores(det, b), scene.x, maps[0], 0, step=1024)
    assert curve.scores[0] == pytest.approx(float(t.confidences[0]), abs=1e-5)
    assert curve.scores[-1] < curve.scores[0]


def test_a_virtual_detection_is_one_hot_with_objectness_one():
    t = DetectionTarget.virtual([1, 2, 30, 40], 1, 3)
    assert t.probs.tolist() == [[0, 1, 0]] and t.objectness.tolist() == [1] and t.detections.tolist() == [-1]
    with pytest.raises(BlackboxCamError, match="out of range"):
        DetectionTarget.virtual([1, 2, 30, 40], 5, 3)
