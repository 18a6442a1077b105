"""Vision transformers (issue 19): token maps, the default layer, attention methods, bad layers.

Models: models/planted_vit/ (a small ViT trained on the planted task by
models/train_planted_vit.py; opset 17 with LayerNormalization and opset 13 with LayerNorm
decomposed) and tests/data/vit_tokens/ (timm DeiT with a distillation token, a mean-pooled ViT
without class token, a two-stage Swin; random weights). Reference maps were made by
pytorch-grad-cam 1.5.7 with the matching ``reshape_transform`` and the attention references in
torch from the attention probabilities and their gradients (make_reference.py there).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from blackbox_cam.cli import main
from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients import TokenGrid, parse_tokens
from blackbox_cam.methods import METHODS, bind_all
from blackbox_cam.methods import gradcam
from blackbox_cam.methods._attention import attentions
from blackbox_cam.methods.attention_grad import relevance_matrix
from blackbox_cam.methods.rollout import rollout_matrix
from blackbox_cam.model.runtime import Classifier

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "data" / "vit_tokens"
PLANTED = ROOT / "models" / "planted_vit"
MODELS = {"deit_distilled": REF / "deit_distilled.onnx", "vit_meanpool": REF / "vit_meanpool.onnx",
          "swin": REF / "swin.onnx", "planted_vit": PLANTED / "planted_vit.onnx"}
ATTN_SOFTMAX = "/blocks/blocks.3/attn/Softmax_output_0"
_CLF: dict = {}


def clf_for(name: str) -> Classifier:
    if name not in _CLF:
        path = MODELS.get(name, PLANTED / f"{name}.onnx")
        _CLF[name] = Classifier(path) if name.startswith("planted") else Classifier(path, preprocess="raw")
    return _CLF[name]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --------------------------------------------------------------------------- (1) token maps


@pytest.mark.parametrize("name, grid, attention, default_scope, reads", [
    ("planted_vit", TokenGrid(8, 8, 1), 4, "/blocks/3/norm1", "extra tokens"),
    ("planted_vit_ln13", TokenGrid(8, 8, 1), 4, "/blocks/3/norm1", "extra tokens"),
    ("deit_distilled", TokenGrid(8, 8, 2), 2, "/blocks/1/norm1", "extra tokens"),
    ("vit_meanpool", TokenGrid(8, 8, 0), 2, "/blocks/1", "all tokens"),
    ("swin", TokenGrid(16, 16, 0, "NHWC"), 0, "/norm", "all tokens"),
])
def test_grid_extra_tokens_attention_and_default_are_read_from_the_graph(name, grid, attention, default_scope, reads):
    clf = clf_for(name)
    facts = gradcam.token_facts(clf)
    assert facts.grid == grid and len(facts.attention) == attention and facts.head_reads == reads
    default = [l for l in gradcam.list_layers(clf) if l.is_default]
    assert len(default) == 1 and default[0].scope == default_scope and default[0].name == facts.default


def test_cnns_have_no_tokens():
    from conftest import EFFNET
    assert gradcam.token_facts(Classifier(EFFNET)).grid is None
    for stem in ("planted", "planted_nhwc"):
        assert gradcam.token_facts(Classifier(ROOT / "models" / "planted" / f"{stem}.onnx")).grid is None


def test_channels_last_cnn_export_is_not_mistaken_for_swin(tmp_path):
    """tf2onnx-style: Conv (3x3, stride 1) -> Transpose(0, 2, 3, 1) -> Relu -> Transpose back."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(np.ones((4, 2), np.float32), "fc")
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Relu", ["t"], ["r"]),
             helper.make_node("ReduceMean", ["r"], ["m"], axes=[1, 2], keepdims=0),
             helper.make_node("MatMul", ["m", "fc"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], [w, fc])
    path = tmp_path / "nhwc_cnn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    assert gradcam.token_facts(onnx.load(path)).grid is None
    # ConvNeXt-style: a patchify stem (4x4, stride 4) and channels-last tensors, but no attention
    nodes[0] = helper.make_node("Conv", ["image", "w4"], ["c"], kernel_shape=[4, 4], strides=[4, 4])
    graph.node.remove(graph.node[0])
    graph.node.insert(0, nodes[0])
    graph.initializer.append(numpy_helper.from_array(np.ones((4, 3, 4, 4), np.float32), "w4"))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    assert gradcam.token_facts(onnx.load(path)).grid is None


@pytest.mark.parametrize("name", ["planted_vit", "deit_distilled", "vit_meanpool", "swin"])
def test_gradcam_family_at_token_layers_equals_pytorch_grad_cam(name):
    """pytorch-grad-cam with reshape_transform (t[:, extra:].reshape(N, h, w, C), NHWC for
    Swin) vs the reshape emitted into the gradient graph, within 1e-4."""
    ref = np.load(REF / f"{name}.npz")
    clf = clf_for(name)
    for layer, tensor in zip(ref["layers"], ref["layer_tensors"]):
        default = str(tensor) == gradcam.token_facts(clf).default
        # HiResCAM sums G * A over channels without pooling; at the random DeiT's first block and
        # the planted ViT's third block its map is ~1e-10 of cancelling terms, float32 noise in
        # both implementations, so it is compared where the map is well conditioned
        for method in ("gradcam", "gradcam++", "xgradcam", "layercam") + (
                ("hirescam",) if default or name in ("vit_meanpool", "swin") else ()):
            got = gradcam.compute_cams(clf, ref["x"], ref["targets"], method=method, layer=str(tensor))
            np.testing.assert_allclose(got, ref[f"cam/{layer}/{method}"], atol=1e-4,
                                       err_msg=f"{name} {layer} {method}")


def test_explain_and_emitted_graph_agree_at_token_layers():
    clf = clf_for("planted_vit")
    ref = np.load(REF / "planted_vit.npz")
    layer = str(ref["layer_tensors"][1])  # blocks.2 output
    maps = gradcam.layer_cams(clf, ref["x"], ref["targets"], layers=[layer])[layer]
    np.testing.assert_allclose(maps, ref[f"cam/{ref['layers'][1]}/gradcam"], atol=1e-4)
    ex = METHODS["gradcam"].fn(clf, ref["x"][0], int(ref["targets"][0]))
    assert ex.params["token_grid"] == "tokens 1+8x8" and ex.params["layer"] == gradcam.token_facts(clf).default


def test_patch_tokens_of_the_last_block_output_get_zero_gradient():
    """Why the default is not the last block's output when the head reads the class token."""
    clf = clf_for("planted_vit")
    ref = np.load(REF / "planted_vit.npz")
    last = str(ref["layer_tensors"][2])  # blocks.3 output
    A, G = gradcam._run(clf, gradcam._gradient_run(clf, (last,)), ref["x"], ref["targets"])
    assert A.shape == (4, 8, 8, 64) and not np.any(G)
    assert np.any(gradcam._run(clf, gradcam._gradient_run(clf, (gradcam.token_facts(clf).default,)),
                               ref["x"], ref["targets"])[1])


def test_tokens_override_parses_and_refuses_in_one_line():
    assert parse_tokens("14,14,1") == TokenGrid(14, 14, 1) and parse_tokens("auto") is None
    with pytest.raises(BlackboxCamError, match="H,W or H,W,EXTRA"):
        parse_tokens("14")
    clf = clf_for("planted_vit")
    ex = METHODS["gradcam"].fn(clf, np.load(REF / "planted_vit.npz")["x"][0], 1, tokens="8,8,1")
    assert ex.params["token_grid"] == "tokens 1+8x8"


def test_layers_lists_token_maps_hides_attention_and_says_why():
    r = run("layers", MODELS["planted_vit"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    star = [ln for ln in lines if ln.startswith("*")]
    assert len(star) == 1 and "/blocks/3/norm1" in star[0] and "tokens 1+8x8" in star[0]
    assert any(ln.endswith("\t/blocks/3") and "Add_1" in ln and "tokens 1+8x8" in ln for ln in lines)  # block output
    assert "Softmax" not in r.output and "patch_embed/Conv" in r.output
    assert any(ln.startswith("# default") and "class token" not in ln and "zero gradient" in ln for ln in lines)
    every = run("layers", MODELS["planted_vit"], "--all").output
    assert every.count("attention (not a feature map)") == 4 and "attention-internal (not a feature map)" in every


# --------------------------------------------------------------------------- (5) bad layers


@pytest.mark.parametrize("layer, message", [
    (ATTN_SOFTMAX, "attention matrix"),
    ("/blocks/blocks.3/attn/Gather_3_output_0", "inside an attention"),
    ("/Gather_1_output_0", "2-D tensor"),
])
def test_bad_transformer_layer_is_one_line_exit_2_before_any_image(tmp_path, layer, message):
    r = run("explain", MODELS["planted_vit"], ROOT / "models" / "images" / "chelsea.png", "-m", "gradcam",
            "--layer", layer, "--out", tmp_path)
    assert r.exit_code == 2 and message in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "explain.json").exists()


def test_three_d_tensor_that_is_not_a_token_map_is_refused():
    clf = clf_for("planted_vit")
    token_map = "/blocks/blocks.0/norm1/LayerNormalization_output_0"
    bind_all(["gradcam"], options={"layer": token_map}, clf=clf)  # a token map is accepted
    with pytest.raises(BlackboxCamError, match="3-D tensor .* but not a token map"):
        gradcam.layer_info(clf, token_map, tokens="4,4")  # a grid that does not fit its 65 tokens


# --------------------------------------------------------------------------- (3) attention methods


@pytest.mark.parametrize("name", ["planted_vit", "deit_distilled", "vit_meanpool"])
def test_rollout_and_attention_grad_equal_their_equations_on_torch_attention(name):
    ref = np.load(REF / f"{name}.npz")
    clf = clf_for(name)
    for b in range(len(ref["x"])):
        pairs, facts = attentions(clf, ref["x"][b], int(ref["targets"][b]), None)
        g = facts.grid
        pick = (lambda R: R[0]) if g.extra else (lambda R: R.mean(0))
        roll = pick(rollout_matrix([A for A, _ in pairs]))[g.extra:].reshape(g.h, g.w)
        chef = pick(relevance_matrix(pairs))[g.extra:].reshape(g.h, g.w)
        np.testing.assert_allclose(roll, ref["rollout"][b], rtol=1e-4, atol=1e-6)
        scale = np.abs(ref["attention_grad"][b]).max()
        np.testing.assert_allclose(chef, ref["attention_grad"][b], rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("method", ["rollout", "attention-grad"])
def test_attention_methods_are_registered_whitebox_maps(method):
    clf = clf_for("planted_vit")
    ex = METHODS[method].fn(clf, np.load(REF / "planted_vit.npz")["x"][0], 3)
    assert METHODS[method].whitebox and ex.queries == 1 and ex.saliency.shape == (64, 64)
    assert 0 <= ex.saliency.min() and ex.saliency.max() <= 1 and ex.params["blocks"] == 4
    ln13 = METHODS[method].fn(clf_for("planted_vit_ln13"), np.load(REF / "planted_vit.npz")["x"][0], 3)
    np.testing.assert_allclose(ln13.saliency, ex.saliency, atol=1e-4)


@pytest.mark.parametrize("name, message", [("swin", "no global attention"), ("cnn", "no patch tokens")])
def test_attention_methods_refuse_models_without_global_attention(name, message):
    from conftest import EFFNET
    clf = Classifier(EFFNET) if name == "cnn" else clf_for(name)
    with pytest.raises(BlackboxCamError, match=message):
        bind_all(["rollout"], clf=clf)


def test_compare_runs_attention_methods_beside_gradcam(tmp_path):
    r = run("compare", MODELS["planted_vit"], ROOT / "models" / "images" / "chelsea.png", "-m",
            "gradcam,rollout,attention-grad,rise", "--budget", "50", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    assert any(p.suffix == ".png" for p in tmp_path.rglob("*"))


# --------------------------------------------------------------------------- OpenVINO


def _shared_weight_model() -> onnx.ModelProto:
    """The four-node reproduction: one weight read plainly and transposed by two MatMuls."""
    w = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]),
             helper.make_node("Transpose", ["W"], ["Wt"], perm=[1, 0]),
             helper.make_node("MatMul", ["g", "Wt"], ["z"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 65, 64])
                                           for n in ("x", "g")],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "z")],
                              [numpy_helper.from_array(w, "W")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_openvino_weight_read_plainly_and_transposed_gives_onnxruntimes_result():
    from blackbox_cam.model.backends import BACKENDS, compile_model
    if not BACKENDS["openvino"].available():
        pytest.skip("openvino is not installed")
    model = _shared_weight_model()
    rng = np.random.default_rng(1)
    feeds = {"x": rng.normal(size=(2, 65, 64)).astype(np.float32), "g": rng.normal(size=(2, 65, 64)).astype(np.float32)}
    want = compile_model(model, "onnxruntime", "cpu").run(["y", "z"], feeds)
    got = compile_model(model, "openvino", "cpu").run(["y", "z"], feeds)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_openvino_gradcam_on_a_transformer_equals_onnxruntime():
    from blackbox_cam.model.backends import BACKENDS
    if not BACKENDS["openvino"].available():
        pytest.skip("openvino is not installed")
    ref = np.load(REF / "planted_vit.npz")
    ov = Classifier(MODELS["planted_vit"], backend="openvino")
    got = gradcam.compute_cams(ov, ref["x"], ref["targets"])
    np.testing.assert_allclose(got, ref["cam/blocks.3.norm1/gradcam"], atol=1e-4)


def test_openvino_message_is_cut_at_a_clause_not_mid_word():
    from blackbox_cam.model.backends.openvino import message
    text = ("Exception from src/core.cpp:1:\nCheck 'x' failed at a.cpp:2:\n"
            + "ReduceSum with dynamic axes is not supported by the CPU plugin; " * 8 + "the end")
    said = message(RuntimeError(text))
    assert len(said) <= 300 and said.endswith("plugin") and "Exception from" not in said


# --------------------------------------------------------------------------- animate


def test_rollout_animation_runs_through_the_blocks_and_ends_at_the_method_map():
    from blackbox_cam.jobs.animate.job import animate
    clf = clf_for("planted_vit")
    image = np.load(ROOT / "models" / "planted" / "heldout.npz")["images"][2].astype(np.float32)
    for method in ("rollout", "attention-grad"):
        anim = animate(clf, image, method, road=False)
        assert [f.name for f in anim.frames] == ["blocks 1-1", "blocks 1-2", "blocks 1-3", "blocks 1-4"]
        from blackbox_cam.explainer.pipeline import explain_image
        np.testing.assert_allclose(anim.frames[-1].layer_map, explain_image(clf, image, method).saliency, atol=1e-5)


def test_gradcam_animation_of_a_transformer_shows_block_outputs_up_to_the_default():
    from blackbox_cam.jobs.animate.job import animate
    clf = clf_for("planted_vit")
    image = np.load(ROOT / "models" / "planted" / "heldout.npz")["images"][2].astype(np.float32)
    anim = animate(clf, image, "gradcam", road=False)
    names = [f.name for f in anim.frames]
    assert names[-1] == gradcam.token_facts(clf).default and "/blocks/blocks.1/Add_1_output_0" in names
    assert "/blocks/blocks.3/Add_1_output_0" not in names and anim.frames[-1].shape == (8, 8, 64)


@pytest.mark.parametrize("method", ["rollout", "attention-grad", "gradcam"])
def test_gate_with_transformer_methods_fails_on_the_object_and_passes_elsewhere(tmp_path, method):
    from PIL import Image
    d = np.load(ROOT / "models" / "planted" / "heldout.npz")
    Image.fromarray(d["images"][2]).save(tmp_path / "ring.png")
    x0, y0, x1, y1 = (int(v) for v in d["boxes"][2])
    on = run("gate", MODELS["planted_vit"], tmp_path / "ring.png", "--forbid", f"{x0},{y0},{x1},{y1}", "-m", method,
             "--out", tmp_path / "on")
    off = run("gate", MODELS["planted_vit"], tmp_path / "ring.png", "--forbid", "0,0,12,12", "-m", method,
              "--out", tmp_path / "off")
    if method == "gradcam":  # Grad-CAM at the ViT's default layer does not point at the ring (README)
        assert on.exit_code in (0, 1) and off.exit_code in (0, 1), (on.output, off.output)
        return
    assert on.exit_code == 1 and "gate FAILED" in on.output, on.output
    assert off.exit_code == 0, off.output
