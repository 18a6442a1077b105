"""Honest maps (issue 18): a map with no information is written and said to be one; a class
named by a number is found by its name."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam import BlackboxCamError, Classifier, explain_image, resolve_target
from blackbox_cam.cli import main

from hostile_util import pooled_linear


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "pic.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
    return path


def test_an_all_zero_gradcam_map_is_written_with_a_warning_line_and_record(tmp_path, picture):
    """Class 0 reads every channel with a negative weight: no positive gradient-weighted
    activation anywhere, so Grad-CAM is exactly zero (as pytorch-grad-cam's would be)."""
    model = pooled_linear(tmp_path / "neg.onnx", np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), relu=True)
    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["explain", str(model), str(picture), "-m", "gradcam,occlusion", "--target", "0",
                                  "--preprocess", "unit", "--out", str(out)])
    assert r.exit_code == 0, r.output
    recs = {rec["method"]: rec for rec in json.loads((out / "explain.json").read_text())}
    assert np.load(out / recs["gradcam"]["npy"]).max() == 0          # still written
    assert recs["gradcam"]["warning"].startswith("the gradcam map is all zero and carries no information")
    assert "saturated class" in recs["gradcam"]["warning"] and "--layer" in recs["gradcam"]["warning"]
    said = [ln for ln in r.output.splitlines() if ln.startswith("warning: ")]
    assert len(said) == 2 and "gradcam map is all zero" in said[0]
    # issue 21: every occluded window *raises* class 0 here (all drops < 0), so the occlusion map,
    # though not constant, has no positive evidence either, and says so in its one line
    assert "no region raises the target score" in recs["occlusion"]["warning"]


def test_a_constant_model_gives_a_warned_black_box_map(tmp_path, picture):
    model = pooled_linear(tmp_path / "flat.onnx", np.zeros((3, 3)))
    clf = Classifier(model, preprocess="unit")
    res = explain_image(clf, np.asarray(Image.open(picture), np.float32), "occlusion", target=2)
    assert res.explanation.warning.startswith("the occlusion map is all zero")
    assert "no perturbation moved the score" in res.explanation.warning


def test_a_map_with_evidence_has_no_warning(planted, heldout):
    res = explain_image(planted, heldout["images"][0].astype(np.float32), "gradcam")
    assert res.explanation.warning is None and res.saliency.max() > 0


def test_numeric_class_names_are_matched_by_name_and_said(tmp_path, caplog):
    """Regression: a page-orientation model's classes are "0", "90", "180", "270"; --target 90
    said "out of range (0..3)" with no hint that "90" names class 1."""
    model = pooled_linear(tmp_path / "ori.onnx", np.eye(4, 3), metadata={"labels": "0\n90\n180\n270"})
    clf = Classifier(model, preprocess="unit")
    with caplog.at_level("WARNING", logger="blackbox_cam"):
        assert resolve_target(clf, "90") == 1
    said = [r.getMessage() for r in caplog.records if r.name == "blackbox_cam"]
    assert len(said) == 1 and "the class named '90' (index 1)" in said[0] and "index:90" in said[0]
    assert resolve_target(clf, "0") == 0 and resolve_target(clf, "180") == 2
    assert resolve_target(clf, "3") == 3                  # no class is named "3": an index
    assert resolve_target(clf, "index:2") == 2 and resolve_target(clf, "label:270") == 3
    assert resolve_target(clf, 1) == 1                    # a Python int is always an index
    with pytest.raises(BlackboxCamError, match="out of range.*its class names are 0, 90, 180, 270"):
        resolve_target(clf, "400")


def test_digit_targets_stay_indices_when_the_labels_are_words(tmp_path):
    model = pooled_linear(tmp_path / "w.onnx", np.eye(3), metadata={"labels": "cat\n1\ndog"})
    clf = Classifier(model, preprocess="unit")
    assert resolve_target(clf, "1") == 1 and resolve_target(clf, "2") == 2 and resolve_target(clf, "dog") == 2
