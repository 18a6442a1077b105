"""Whole exported models: gradients of a logit w.r.t. intermediate layers.

The models in tests/data/gradients/ come from make_models.py (ResNet-like with residuals and
MaxPool; MobileNetV3-like with depthwise conv, SE and HardSwish; ViT-like with LayerNorm,
MatMul, Softmax, Gelu/Erf and a cls-token Gather), each exported by the TorchScript and the
dynamo exporter with a fixed and a dynamic batch. Every gradient is checked against
(1) torch autograd values stored next to the models, and (2) directional finite differences
through ORT of the model cut at the layer. The bundled EfficientNet-Lite0 is checked by
finite differences when it exists.
"""
from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import pytest

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients import build_gradient_model, candidate_layers, prepare_model
from gradients_util import (case_seed, cut_at, directional_fd, seed_note, session,
                            with_outputs)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "gradients")
ROOT = os.path.dirname(HERE)
MODEL_FILES = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(DATA, "*.onnx")))
EFFICIENTNET = os.path.join(ROOT, "models", "efficientnet_lite0.onnx")


def _arch(name: str) -> str:
    return name.split("_")[0]


_CACHE: dict[str, tuple] = {}


def _direction(rng, act: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """A random direction leaning towards the gradient, so that the directional derivative is
    well above float32 noise in the finite difference, scaled to the activation's RMS."""
    rms = lambda a: np.sqrt(np.mean(a.astype(np.float64) ** 2)) or 1.0  # noqa: E731
    v = rng.normal(size=act.shape) + 2.0 * grad / rms(grad)
    return v / rms(v) * rms(act)


def _load(name: str):
    """(prepared model, reference npz, {tag: onnx tensor name}), cached per file."""
    if name not in _CACHE:
        model = prepare_model(os.path.join(DATA, name + ".onnx"))
        ref = dict(np.load(os.path.join(DATA, _arch(name) + ".npz")))
        layers = candidate_layers(model)
        sess = session(with_outputs(model, [info.name for info in layers]))
        values = dict(zip([info.name for info in layers], sess.run(None, {
            model.graph.input[0].name: ref["x"]})))
        tags = {}
        for key in ref:
            if not key.startswith("act/"):
                continue
            tag, act = key[4:], ref[key]
            match = [info.name for info in layers if values[info.name].shape == act.shape
                     and np.allclose(values[info.name], act, rtol=1e-4, atol=1e-4)]
            assert match, f"{name}: no ONNX tensor matches torch module '{tag}'"
            tags[tag] = match[0]
        _CACHE[name] = (model, ref, tags, layers)
    return _CACHE[name]


@pytest.mark.parametrize("name", MODEL_FILES)
def test_gradients_match_torch_autograd(name):
    model, ref, tags, _ = _load(name)
    gm = build_gradient_model(model, list(tags.values()))
    out = gm.run(session(gm.model), ref["x"], ref["seed"])
    for tag, layer in tags.items():
        act, grad = out[gm.activation_names[layer]], out[gm.gradient_names[layer]]
        np.testing.assert_allclose(act, ref[f"act/{tag}"], rtol=1e-4, atol=1e-4)
        scale = np.abs(ref[f"grad/{tag}"]).max()
        np.testing.assert_allclose(grad, ref[f"grad/{tag}"], rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=f"{name}: gradient at '{tag}' ({layer})")


@pytest.mark.parametrize("name", MODEL_FILES)
def test_gradients_match_directional_finite_differences(name):
    model, ref, tags, layers = _load(name)
    shapes = {info.name: info.shape for info in layers}
    seed = case_seed(name)
    rng = np.random.default_rng(seed)
    gm = build_gradient_model(model, list(tags.values()))
    out = gm.run(session(gm.model), ref["x"], ref["seed"])
    image = gm.input_name
    for tag, layer in tags.items():
        act, grad = out[layer], out[gm.gradient_names[layer]]
        cut = session(cut_at(model, layer, shapes[layer], onnx.TensorProto.FLOAT,
                             gm.target_name))

        def score(value):
            logits = cut.run(None, {image: ref["x"], layer: value.astype(np.float32)})[0]
            return float(np.sum(ref["seed"] * logits.astype(np.float64)))

        for _ in range(2):
            v = _direction(rng, act, grad)
            fd = directional_fd(score, act.astype(np.float64), v, 1e-3)
            analytic = float(np.sum(grad.astype(np.float64) * v))
            bound = 2e-2 * abs(analytic) + 1e-3 * np.linalg.norm(grad) * np.linalg.norm(v)
            assert abs(fd - analytic) <= bound, (
                f"{name} at '{tag}': FD {fd:.6g} vs analytic {analytic:.6g}; {seed_note(seed)}")


@pytest.mark.parametrize("name", [n for n in MODEL_FILES if n.endswith("_dynamic")])
def test_dynamic_batch_gives_per_image_gradients(name):
    model, ref, tags, _ = _load(name)
    gm = build_gradient_model(model, list(tags.values()))
    sess = session(gm.model)
    both = gm.run(sess, ref["x"], ref["seed"])
    x3 = np.concatenate([ref["x"], ref["x"][:1]])
    seed3 = np.concatenate([ref["seed"], ref["seed"][:1]])
    three = gm.run(sess, x3, seed3)
    one = gm.run(sess, ref["x"][1:], ref["seed"][1:])
    for layer in tags.values():
        g = gm.gradient_names[layer]
        np.testing.assert_allclose(three[g][:2], both[g], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(three[g][2], both[g][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(one[g][0], both[g][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODEL_FILES)
def test_default_layer_is_the_map_the_global_pooling_reads(name):
    """The ViT-like net's head reads the class token: its default is the last attention's input,
    the block's norm1 token map (issue 19; the patch tokens after it get zero gradient)."""
    model, ref, tags, layers = _load(name)
    defaults = [info.name for info in layers if info.is_default]
    if _arch(name) == "vit":
        assert [info.scope for info in layers if info.is_default] == ["/block/norm1"]
        return
    expected = str(ref["default"])
    assert defaults == ([tags[expected]] if expected else [])


def test_unknown_layer_suggests_close_names():
    model, _, tags, _ = _load("resnet_ts_fixed")
    with pytest.raises(BlackboxCamError, match="did you mean"):
        build_gradient_model(model, ["/block2/relu/Relu_output"])


def test_layer_that_does_not_influence_the_score_is_refused():
    model, _, _, _ = _load("resnet_ts_fixed")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.node.append(onnx.helper.make_node("Relu", ["input"], ["side"], name="side_relu"))
    with pytest.raises(BlackboxCamError, match="does not influence"):
        build_gradient_model(m, ["side"])


def test_op_without_rule_names_op_node_and_supported_ops():
    model, _, tags, _ = _load("resnet_ts_fixed")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    relu = next(n for n in m.graph.node if n.output[0] == tags["block2"])
    relu.op_type, relu.name = "Softsign", "odd_one"
    with pytest.raises(BlackboxCamError, match=r"'Softsign'.*odd_one.*supported ops: .*Conv"):
        build_gradient_model(m, [tags["block1"]])


def test_ort_optimised_model_is_refused():
    model, _, _, _ = _load("resnet_ts_fixed")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.node[0].domain = "com.microsoft"
    with pytest.raises(BlackboxCamError, match="original"):
        prepare_model(m)


def test_use_probability_differentiates_softmax_of_logits():
    model, ref, tags, _ = _load("resnet_ts_fixed")
    layer = tags["block2"]
    gm = build_gradient_model(model, [layer], use_probability=True)
    out = gm.run(session(gm.model), ref["x"], ref["seed"])
    p = np.exp(ref["logits"] - ref["logits"].max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    # d sum(seed * softmax(z)) / dz = p * (seed - sum(seed * p)): chain through the logit grads
    dz = p * (ref["seed"] - np.sum(ref["seed"] * p, axis=1, keepdims=True))
    gl = build_gradient_model(model, [layer]).run(None, ref["x"], dz.astype(np.float32))
    np.testing.assert_allclose(out[gm.gradient_names[layer]], gl[f"grad/{layer}"],
                               rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not os.path.exists(EFFICIENTNET),
                    reason="models/efficientnet_lite0.onnx is not there yet (exported by "
                           "another engineer)")
def test_efficientnet_lite0_gradients_match_finite_differences():
    """Default layer (head feature map), the last block's output, and a 56x56 layer whose
    gradient crosses the stride-2 blocks (TF-'same' asymmetric pads)."""
    model = prepare_model(EFFICIENTNET)
    layers = candidate_layers(model)
    default = next(info for info in layers if info.is_default)
    blocks = [info for info in layers if info.scope.startswith("/_blocks/")]
    last_block = max(int(info.scope.split("/")[2]) for info in blocks)
    last = [info for info in blocks if info.scope.split("/")[2] == str(last_block)][-1]
    early = [info for info in layers
             if info.shape and len(info.shape) == 4 and info.shape[2] == 56][-1]
    chosen = [default, last, early]
    seed = case_seed("efficientnet_lite0")
    rng = np.random.default_rng(seed)
    gm = build_gradient_model(model, [info.name for info in chosen])
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = rng.uniform(-1, 1, size=[2] + dims[1:]).astype(np.float32)
    logits = session(with_outputs(model, [gm.target_name])).run(None, {gm.input_name: x})[0]
    s = np.eye(logits.shape[1], dtype=np.float32)[logits.argmax(1)]
    out = gm.run(session(gm.model), x, s)
    for layer in chosen:
        act, grad = out[layer.name], out[gm.gradient_names[layer.name]]
        cut = session(cut_at(model, layer.name, layer.shape, onnx.TensorProto.FLOAT,
                             gm.target_name))

        def score(value):
            z = cut.run(None, {gm.input_name: x, layer.name: value.astype(np.float32)})[0]
            return float(np.sum(s * z.astype(np.float64)))

        # deep ReLU6 stacks saturate quickly along the gradient: a small step (the direction
        # leans on the gradient, so the difference stays far above float32 noise)
        v = _direction(rng, act, grad)
        fd = directional_fd(score, act.astype(np.float64), v, 1e-5)
        analytic = float(np.sum(grad.astype(np.float64) * v))
        bound = 2e-2 * abs(analytic) + 1e-3 * np.linalg.norm(grad) * np.linalg.norm(v)
        assert abs(fd - analytic) <= bound, (
            f"{layer.scope}: FD {fd:.6g} vs analytic {analytic:.6g}; {seed_note(seed)}")


def test_old_opset_model_is_converted_and_differentiated():
    """An opset-11 model is converted up by prepare_model (the ResNet's ops mean the same at
    opset 11, so relabelling the export gives a genuine opset-11 model)."""
    _, ref, tags, _ = _load("resnet_ts_fixed")
    old = onnx.load(os.path.join(DATA, "resnet_ts_fixed.onnx"))
    old.opset_import[0].version = 11
    onnx.checker.check_model(old)
    model = prepare_model(old)
    assert model.opset_import[0].version >= 17
    gm = build_gradient_model(old, [tags["stem.0"]])
    out = gm.run(None, ref["x"], ref["seed"])
    scale = np.abs(ref["grad/stem.0"]).max()
    np.testing.assert_allclose(out[gm.gradient_names[tags["stem.0"]]], ref["grad/stem.0"],
                               rtol=1e-3, atol=1e-4 * scale)


def test_extended_model_keeps_gradients_and_adds_outputs():
    """The Grad-CAM side appends nodes to the plain ModelProto; the original is untouched."""
    model, ref, tags, _ = _load("resnet_ts_fixed")
    layer = tags["block2"]
    gm = build_gradient_model(model, [layer])
    n_before = len(gm.model.graph.node)
    axes = onnx.numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "cam/axes")
    node = onnx.helper.make_node("ReduceMean", [gm.gradient_names[layer]], ["cam/weights"],
                                 keepdims=1, axes=[2, 3])
    out_vi = onnx.helper.make_tensor_value_info("cam/weights", onnx.TensorProto.FLOAT,
                                                ["N", 16, 1, 1])
    ext = gm.extended([node], [out_vi], [axes])
    assert len(gm.model.graph.node) == n_before
    out = ext.run(None, ref["x"], ref["seed"])
    np.testing.assert_allclose(out["cam/weights"],
                               out[gm.gradient_names[layer]].mean(axis=(2, 3), keepdims=True),
                               rtol=1e-5, atol=1e-7)
    onnx.checker.check_model(ext.model)


def test_build_leaves_the_input_model_unchanged():
    model, _, tags, _ = _load("vit_dynamo_dynamic")
    before = model.SerializeToString()
    build_gradient_model(model, list(tags.values()))
    assert model.SerializeToString() == before
