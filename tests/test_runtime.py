"""The ONNX Runtime wrapper on what vendors export: layouts, dtypes, fixed batches, softmax heads."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from blackbox_cam import BlackboxCamError, BudgetExceeded, Classifier
from blackbox_cam.model.signature import detect_layout

from conftest import PLANTED, linear_classifier, require


def _images(n=5, size=64, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, size, size, 3)).astype(np.float32)


def _probs(clf, imgs):
    return clf.probabilities(np.stack([clf.prepare(im) for im in imgs]))


def test_layout_detection():
    assert detect_layout(["N", 3, 224, 224]) == "NCHW"
    assert detect_layout(["N", 224, 224, 3]) == "NHWC"
    assert detect_layout([1, 1, 28, 28]) == "NCHW"
    assert detect_layout(["N", 5, 7, 9]) is None


@pytest.mark.parametrize("variant", ["planted_nhwc", "planted_fixed1", "planted_softmax", "planted_uint8",
                                     "planted_fixed1_reshape"])
def test_variants_give_the_reference_probabilities(planted, variant):
    clf = Classifier(require(PLANTED / f"{variant}.onnx"), device="cpu")
    imgs = _images()
    tol = 2e-2 if variant == "planted_uint8" else 1e-4
    np.testing.assert_allclose(_probs(clf, imgs), _probs(planted, imgs), atol=tol)
    assert clf.num_classes == planted.num_classes
    assert clf.queries == len(imgs)


def test_variant_properties(planted):
    assert planted.layout == "NCHW" and not planted.outputs_probabilities
    assert Classifier(require(PLANTED / "planted_nhwc.onnx")).layout == "NHWC"
    assert Classifier(require(PLANTED / "planted_softmax.onnx")).outputs_probabilities
    fixed = Classifier(require(PLANTED / "planted_fixed1.onnx"))
    assert not fixed._loop and fixed.batch_size > 1  # batch rewritten to symbolic
    looped = Classifier(require(PLANTED / "planted_fixed1_reshape.onnx"))
    assert looped._loop  # graph hard-codes batch 1: evaluated in a loop, still correct


def test_probability_output_detected_without_softmax_node(tmp_path):
    path = linear_classifier(tmp_path / "m.onnx", softmax=True)
    clf = Classifier(path, preprocess="unit")
    assert clf.outputs_probabilities
    p = clf.probabilities(clf.prepare(_images(1, 8)[0])[None])
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-5)


def test_output_choice(tmp_path):
    path = linear_classifier(tmp_path / "two.onnx", extra_output=True)
    assert Classifier(path).output_name == "f"  # first 2-D output by default
    assert Classifier(path, output="logits").num_classes == 4
    assert Classifier(path, output=1).output_name == "logits"
    with pytest.raises(BlackboxCamError, match="no output named 'nope'.*logits"):
        Classifier(path, output="nope")


def test_float16_input(tmp_path):
    from onnx import helper
    from conftest import save_model
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    g = helper.make_graph([helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
                           helper.make_node("GlobalAveragePool", ["xf"], ["p"]),
                           helper.make_node("Flatten", ["p"], ["y"])], "fp16", [x], [y])
    clf = Classifier(save_model(g, tmp_path / "h.onnx"), preprocess="unit")
    assert clf.input_dtype == np.float16 and clf.num_classes == 3


def test_budget_is_a_hard_limit(planted):
    x = np.zeros((10, 3, 64, 64), np.float32)
    q = planted.queries
    with planted.limit(15):
        planted.scores(x)
        with pytest.raises(BudgetExceeded):
            planted.scores(x)
    assert planted.queries == q + 10
    planted.scores(x)  # the limit ends with the block


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.onnx", "no such file"),
    (lambda p: p, "is not a file"),
    (lambda p: (p / "junk.onnx").write_bytes(b"\x00\x01not onnx at all" * 10) and p / "junk.onnx", "not an ONNX model"),
    (lambda p: linear_classifier(p / "two_in.onnx", inputs=2), "has 2 inputs"),
    (lambda p: linear_classifier(p / "vec.onnx", input_shape=("N", 10)), "not an image tensor"),
    (lambda p: linear_classifier(p / "i64.onnx", elem=TensorProto.INT64), "element type INT64"),
])
def test_bad_models_give_one_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(BlackboxCamError, match=message) as e:
        Classifier(path)
    assert "\n" not in str(e.value) and str(path.name) in str(e.value)


def test_sidecar_and_flags(tmp_path):
    path = linear_classifier(tmp_path / "m.onnx")
    (tmp_path / "m.json").write_text('{"preprocess": "unit", "labels": "names.txt"}')
    (tmp_path / "names.txt").write_text("a\nb\nc\nd\n")
    clf = Classifier(path)
    assert clf.preprocessing.name == "unit" and clf.labels == ["a", "b", "c", "d"]
    assert Classifier(path, preprocess="symmetric").preprocessing.mean == (0.5, 0.5, 0.5)
    (tmp_path / "m.json").write_text('{"prepocess": "unit"}')
    with pytest.raises(BlackboxCamError, match="unknown sidecar key"):
        Classifier(path)
