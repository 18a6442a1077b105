"""The model reader: ONNX facts read once, the same for the runtime, the gradients and Grad-CAM."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from blackbox_cam import BlackboxCamError, Classifier
from blackbox_cam.gradients import build_gradient_model
from blackbox_cam.model.signature import read_model, softmax_tail

from conftest import linear_classifier, save_model


def _softmax_model(path, tail: str | None):
    """x -> GlobalAveragePool -> Flatten(f) -> Gemm(z) -> Softmax(p) [-> tail] -> out, 4 classes."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["p" if tail else "out"], axis=1)]
    inits = [helper.make_tensor("W", TensorProto.FLOAT, [4, 3], rng.normal(size=12)),
             helper.make_tensor("b", TensorProto.FLOAT, [4], rng.normal(size=4))]
    if tail == "Flatten":
        nodes.append(helper.make_node("Flatten", ["p"], ["out"], axis=1))
    elif tail == "Reshape":
        inits.append(helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 4]))
        nodes.append(helper.make_node("Reshape", ["p", "shape"], ["out"]))
    graph = helper.make_graph(nodes, "softmax_tail", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                    ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])], inits)
    return save_model(graph, path)


def _gradient(model, layer, *, use_probability, x, seed):
    gm = build_gradient_model(model, [layer], use_probability=use_probability)
    return gm.run(None, x, seed)[gm.gradient_names[layer]]


@pytest.mark.parametrize("tail", ["Flatten", "Reshape"])
@pytest.mark.parametrize("use_probability", [False, True])
def test_gradients_look_through_a_reshape_after_the_softmax_like_the_runtime(tmp_path, tail, use_probability):
    """Regression: the runtime looked through Reshape/Flatten after a Softmax, the gradient builder
    did not: it differentiated the probability as if it were the logits, or appended a second
    Softmax when asked for the probability."""
    plain = onnx.load(str(_softmax_model(tmp_path / "plain.onnx", None)))
    tailed = onnx.load(str(_softmax_model(tmp_path / "tailed.onnx", tail)))
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    seed = np.eye(4, dtype=np.float32)[[1, 3]]
    want = _gradient(plain, "f", use_probability=use_probability, x=x, seed=seed)
    got = _gradient(tailed, "f", use_probability=use_probability, x=x, seed=seed)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert softmax_tail(tailed.graph, "out")[0].op_type == "Softmax"
    clf = Classifier(tmp_path / "tailed.onnx", preprocess="raw")
    assert clf.signature.softmax and clf.outputs_probabilities


def test_gradcam_differentiates_what_the_model_returns_through_the_signature(tmp_path):
    """The gradient model follows the classifier's signature: a Softmax tail means the probability."""
    path = _softmax_model(tmp_path / "tailed.onnx", "Flatten")
    clf = Classifier(path, preprocess="raw")
    x = np.random.default_rng(2).normal(size=(1, 3, 8, 8)).astype(np.float32)
    seed = np.eye(4, dtype=np.float32)[[2]]
    by_signature = build_gradient_model(clf.model, ["f"], signature=clf.signature)
    got = by_signature.run(None, x, seed)[by_signature.gradient_names["f"]]
    want = _gradient(onnx.load(str(path)), "f", use_probability=True, x=x, seed=seed)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_read_model_is_a_pure_function_of_the_graph(tmp_path, monkeypatch):
    import onnxruntime as ort

    def no_sessions(*a, **k):
        raise AssertionError("the reader must not make a session")

    monkeypatch.setattr(ort, "InferenceSession", no_sessions)
    sig = read_model(onnx.load(str(linear_classifier(tmp_path / "m.onnx", input_shape=(2, 8, 8, 3)))))
    assert (sig.layout, sig.channels, sig.input_size, sig.fixed_batch) == ("NHWC", 3, (8, 8), 2)
    assert sig.output_name == "logits" and sig.static_classes == 4 and not sig.softmax
    with pytest.raises(dataclasses.FrozenInstanceError):
        sig.layout = "NCHW"


def test_classifier_facts_are_views_of_its_one_signature(planted):
    sig = planted.signature
    assert (planted.input_name, planted.layout, planted.input_size, planted.channels, planted.output_name) == (
        sig.input_name, sig.layout, sig.input_size, sig.channels, sig.output_name)
    with pytest.raises(AttributeError):
        planted.layout = "NHWC"  # facts are read once, not set afterwards


@pytest.mark.parametrize("kwargs, message", [
    ({"output": "nope"}, "no output named 'nope'"),
    ({"output": 5}, "--output 5 out of range"),
    ({"layout": "NCWH"}, "unknown layout 'NCWH'"),
])
def test_reader_errors_are_one_line_naming_the_model(tmp_path, kwargs, message):
    m = onnx.load(str(linear_classifier(tmp_path / "m.onnx")))
    with pytest.raises(BlackboxCamError, match=message) as e:
        read_model(m, source="m.onnx", **kwargs)
    assert "\n" not in str(e.value)


def test_gradcam_makes_its_session_through_the_session_factory(planted, heldout, monkeypatch):
    """Regression: gradcam built its own InferenceSession outside the session factory."""
    from blackbox_cam import explain_image
    from blackbox_cam.methods import gradcam as gc
    made = []
    real = gc.compile_model
    monkeypatch.setattr(gc, "compile_model", lambda model, *a, **k: made.append((a, k)) or real(model, *a, **k))
    gc._STATE.pop(planted, None)
    explain_image(planted, heldout["images"][0].astype(np.float32), "hirescam")
    # the gradient graph, through the factory: ONNX Runtime, the classifier's device and threads
    assert made == [(("onnxruntime", planted.session.device), {"threads": planted.session.threads})]
