"""Inference backends: one interface, the same scores, maps and budget whichever engine runs.

Every test parametrised over ``backend`` runs on each registered backend; one whose package
is not installed (the optional ``openvino`` extra) is skipped with that reason. Agreement is
checked against ONNX Runtime on CPU, the reference backend.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from blackbox_cam import BlackboxCamError, BudgetExceeded, Classifier, explain_image
from blackbox_cam.model import backends
from blackbox_cam.model.backends import BACKENDS, BackendError, compile_model, run_batched
from blackbox_cam.cli import main

from conftest import EFFNET, IMAGES, PLANTED, linear_classifier, require, save_model

VARIANTS = ["planted", "planted_nhwc", "planted_fixed1", "planted_fixed1_reshape", "planted_softmax",
            "planted_uint8"]
OTHERS = [name for name in BACKENDS if name != "onnxruntime"]


def _installed(name: str):
    cls = BACKENDS[name]
    if not cls.available():
        pytest.skip(f"{cls.package} is not installed: pip install \"blackbox-cam[{cls.extra}]\" "
                    "(the test extra installs it)")
    return name


@pytest.fixture(params=list(BACKENDS))
def backend(request):
    return _installed(request.param)


@pytest.fixture(params=OTHERS or [pytest.param(None, marks=pytest.mark.skip(
    reason="only onnxruntime is registered: no second backend to compare with"))])
def other(request):
    return _installed(request.param)


def _images(n=6, size=64, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, size, size, 3)).astype(np.float32)


def _model_space(clf, imgs):
    return np.stack([clf.prepare(im) for im in imgs])


def _pair(path, other, **kw):
    return Classifier(path, backend="onnxruntime", device="cpu", **kw), Classifier(path, backend=other, device="cpu", **kw)


# --------------------------------------------------------------------------- the interface


def test_every_backend_describes_its_tensors(backend):
    s = compile_model(require(EFFNET), backend, "cpu")
    assert s.name == backend and s.device == "cpu"
    assert [(i.name, i.shape, i.dtype) for i in s.inputs] == [("image", (None, 3, 224, 224), np.float32)]
    assert [(o.name, o.shape) for o in s.outputs] == [("logits", (None, 1000))]
    assert s.describe().startswith(f"{backend} ") and s.describe().endswith("on CPU")
    assert s.record()["name"] == backend and s.record()["version"] == s.version


def test_fixed_batch_runner_pads_the_last_call_and_drops_the_padding(tmp_path, backend):
    path = linear_classifier(tmp_path / "fixed2.onnx", input_shape=(2, 3, 8, 8))
    s = compile_model(path, backend, "cpu")
    assert s.input("x0").fixed_batch == 2
    x = np.random.default_rng(0).normal(size=(5, 3, 8, 8)).astype(np.float32)
    out = run_batched(s, {"x0": x}, ["logits"], 2, fixed=True)[0]
    singles = np.concatenate([s.run(["logits"], {"x0": np.repeat(x[i:i + 1], 2, 0)})[0][:1] for i in range(5)])
    assert out.shape == (5, 4)
    np.testing.assert_allclose(out, singles, rtol=1e-6, atol=1e-6)


def test_unknown_backend_is_one_clear_line(planted_path):
    with pytest.raises(BlackboxCamError, match="unknown backend 'tensorrt'; choose one of auto, onnxruntime"):
        Classifier(planted_path, backend="tensorrt")


def test_auto_is_onnxruntime_cuda_only_when_cuda_initialises(monkeypatch):
    from blackbox_cam.model.backends import onnxruntime as ort_backend
    monkeypatch.setattr(ort_backend, "cuda_works", lambda: True)
    assert backends.resolve("auto", "auto") == ("onnxruntime", "cuda")
    assert backends.resolve("auto", "cpu")[1] == "cpu"
    monkeypatch.setattr(ort_backend, "cuda_works", lambda: False)
    # on CPU, auto is ONNX Runtime even where OpenVINO is installed (it measured faster here)
    assert backends.resolve("auto", "auto") == ("onnxruntime", "cpu")


def test_cli_prints_the_backend_once_and_records_it(tmp_path, planted_path, heldout):
    from PIL import Image
    Image.fromarray(heldout["images"][0]).save(tmp_path / "a.png")
    r = CliRunner().invoke(main, ["explain", str(planted_path), str(tmp_path / "a.png"), "-m", "occlusion",
                                  "--backend", "onnxruntime", "--device", "cpu", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert r.output.count("backend: onnxruntime ") == 1 and "on CPU" in r.output
    rec = json.loads((tmp_path / "out" / "explain.json").read_text())[0]
    assert rec["backend"]["name"] == "onnxruntime" and rec["backend"]["device"] == "cpu"
    assert rec["backend"]["providers"] == ["CPUExecutionProvider"]


def test_auto_says_which_engine_and_why_in_its_one_backend_line(tmp_path, planted_path, heldout):
    """Regression (issue 23): auto picked OpenVINO on every CPU machine though it measured slower."""
    from PIL import Image
    Image.fromarray(heldout["images"][0]).save(tmp_path / "a.png")
    r = CliRunner().invoke(main, ["explain", str(planted_path), str(tmp_path / "a.png"), "-m", "occlusion",
                                  "--device", "cpu", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    line = [ln for ln in r.output.splitlines() if ln.startswith("backend: ")]
    assert len(line) == 1 and line[0].startswith("backend: onnxruntime ") and "auto picks ONNX Runtime" in line[0]


# --------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("variant", VARIANTS)
def test_scores_agree_across_backends_on_planted_variants(variant, other):
    ref, clf = _pair(require(PLANTED / f"{variant}.onnx"), other)
    assert (clf.layout, clf.input_dtype, clf.outputs_probabilities, clf._loop) == \
           (ref.layout, ref.input_dtype, ref.outputs_probabilities, ref._loop)
    x = _model_space(ref, _images(7))  # 7: not a multiple of the automatic batch
    np.testing.assert_allclose(clf.scores(x), ref.scores(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(clf.probabilities(x), ref.probabilities(x), atol=1e-4)


def test_scores_agree_across_backends_on_the_bundled_model(other, heldout):
    ref, clf = _pair(require(EFFNET), other, batch_size=3)
    from blackbox_cam import load_image
    from conftest import IMAGES
    imgs = [load_image(p) for p in sorted(IMAGES.glob("*.png"))[:2]] + list(_images(2, 224))
    x = _model_space(ref, imgs)
    np.testing.assert_allclose(clf.scores(x), ref.scores(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(clf.probabilities(x), ref.probabilities(x), atol=1e-4)


def test_output_selection_agrees_across_backends(tmp_path, other):
    path = linear_classifier(tmp_path / "two.onnx", extra_output=True)
    for output in (None, "logits", 1):
        ref, clf = _pair(path, other, output=output, preprocess="unit")
        assert clf.output_name == ref.output_name
        x = _model_space(ref, _images(3, 8))
        np.testing.assert_allclose(clf.scores(x), ref.scores(x), rtol=1e-5, atol=1e-5)


def test_float16_input_agrees_across_backends(tmp_path, other):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    g = helper.make_graph([helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
                           helper.make_node("GlobalAveragePool", ["xf"], ["p"]),
                           helper.make_node("Flatten", ["p"], ["y"])], "fp16", [x], [y])
    ref, clf = _pair(save_model(g, tmp_path / "h.onnx"), other, preprocess="unit")
    assert clf.input_dtype == np.float16
    xs = _model_space(ref, _images(3, 8))
    np.testing.assert_allclose(clf.scores(xs), ref.scores(xs), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method, budget", [("rise", 120), ("occlusion", None), ("decam", 120)])
def test_maps_for_a_seed_agree_across_backends(method, budget, other, heldout, planted_path):
    ref, clf = _pair(planted_path, other)
    img = heldout["images"][0].astype(np.float32)
    a = explain_image(ref, img, method, budget=budget, seed=3)
    b = explain_image(clf, img, method, budget=budget, seed=3)
    assert a.explanation.queries == b.explanation.queries
    np.testing.assert_allclose(b.saliency, a.saliency, atol=1e-4)


def test_gradcam_maps_agree_across_backends(other, heldout, planted_path):
    ref, clf = _pair(planted_path, other)
    img = heldout["images"][1].astype(np.float32)
    for method in ("gradcam", "gradcam++"):
        a = explain_image(ref, img, method)
        b = explain_image(clf, img, method)
        np.testing.assert_allclose(b.saliency, a.saliency, atol=1e-4)


# --------------------------------------------------------------------------- the budget


def test_query_budget_holds_on_every_backend(backend, planted_path, heldout):
    clf = Classifier(planted_path, backend=backend, device="cpu")
    img = heldout["images"][2].astype(np.float32)
    for method, budget in (("decam", 90), ("rise", 77)):
        q = clf.queries
        res = explain_image(clf, img, method, budget=budget, seed=0)
        assert clf.queries - q == res.explanation.queries <= budget  # the unmasked scoring included
    x = np.zeros((10, 3, 64, 64), np.float32)
    with clf.limit(15):
        clf.scores(x)
        with pytest.raises(BudgetExceeded):
            clf.scores(x)


# --------------------------------------------------------------------------- OpenVINO's failures


def _scaler_head(path):
    """A classifier whose head is ai.onnx.ml's Scaler: ONNX Runtime runs it, OpenVINO's ONNX
    frontend has no conversion rule for it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    g = helper.make_graph([helper.make_node("GlobalAveragePool", ["x"], ["p"]),
                           helper.make_node("Flatten", ["p"], ["f"]),
                           helper.make_node("Scaler", ["f"], ["y"], domain="ai.onnx.ml", offset=[0.0, 0.0, 0.0],
                                            scale=[1.0, 2.0, 3.0])], "ml", [x], [y])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
                              ir_version=8)
    onnx.save(model, str(path))
    return path


def test_openvino_missing_says_how_to_install_exit_2(monkeypatch, planted_path, tmp_path):
    monkeypatch.setattr(BACKENDS["openvino"], "available", classmethod(lambda cls: False))
    r = CliRunner().invoke(main, ["explain", str(planted_path), str(IMAGES / "chelsea.png"), "--backend", "openvino",
                                  "--out", str(tmp_path)])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and 'pip install "blackbox-cam[openvino]"' in lines[0], r.output
    assert backends.resolve("auto", "cpu") == ("onnxruntime", "cpu")  # auto does without it


def test_model_openvino_cannot_read_fails_in_one_line(tmp_path, caplog):
    _installed("openvino")
    path = _scaler_head(tmp_path / "ml.onnx")
    with pytest.raises(BackendError) as e:
        Classifier(path, backend="openvino", preprocess="unit")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: OpenVINO cannot read the model")
    assert "ai.onnx.ml.Scaler" in msg  # the backend's own words
    with caplog.at_level("WARNING", logger="blackbox_cam"):
        clf = Classifier(path, backend="auto", device="cpu", preprocess="unit")
    assert clf.session.name == "onnxruntime"  # auto never tries OpenVINO, so nothing to fall back from
    assert not [r for r in caplog.records if r.name == "blackbox_cam"]


def test_gradient_graph_always_runs_on_onnxruntime_with_one_whole_line(caplog):
    """Regression (issue 18): on an OpenVINO classifier the gradient graph ran on OpenVINO,
    whose RegNet maps were 0.41 off pytorch-grad-cam (and which crashed on a renamed input);
    it now runs on ONNX Runtime, said once in one whole sentence, and matches the reference."""
    _installed("openvino")
    from pathlib import Path

    from blackbox_cam.methods import gradcam as gc
    zoo = Path(__file__).parent / "data" / "zoo"
    entry = json.loads((zoo / "zoo.json").read_text())["regnet_ts17"]
    ref = np.load(zoo / f"{entry['family']}.npz")
    clf = Classifier(zoo / entry["file"], backend="openvino", device="cpu")
    assert clf.session.name == "openvino"
    layers = [d["tensors"][0] for d in entry["layers"]]
    with caplog.at_level("WARNING", logger="blackbox_cam"):
        maps = gc.layer_cams(clf, ref["x"], ref["targets"], method="gradcam", layers=layers)
        gc.layer_cams(clf, ref["x"], ref["targets"], method="gradcam", layers=layers[:1])
    for d in entry["layers"]:
        assert np.abs(maps[d["tensors"][0]] - ref[f"cam/{d['module']}"]).max() < 1e-4, d["module"]
    said = [r.getMessage() for r in caplog.records if r.name == "blackbox_cam"]
    assert len(said) == 1 and said[0].startswith("white-box: the gradient graph runs on onnxruntime, not openvino")
    assert said[0].endswith("1e-5") and "\n" not in said[0]
    res = explain_image(clf, (ref["x"][0].transpose(1, 2, 0) * 128 + 128).clip(0, 255), "gradcam")
    assert res.explanation.params["gradients"].startswith("onnxruntime")
