"""Vendor pipelines: crop / letterbox resizing, maps back on the original image, BGR, uint8."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam import Classifier, explain_image
from blackbox_cam.cli import main
from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.model.geometry import Geometry
from blackbox_cam.io.images import resize

from hostile_util import pooled_linear


def test_crop_is_torchvision_resize_then_centre_crop():
    img = np.random.default_rng(0).uniform(0, 255, (375, 500, 3)).astype(np.float32)
    got, pl = Geometry("crop", 0.875).to_input(img, (224, 224))
    full = resize(img, (256, 341))  # Resize(256): shorter side 256, longer int(256 * 500 / 375)
    top, left = round((256 - 224) / 2), round((341 - 224) / 2)
    assert np.abs(got - full[top:top + 224, left:left + 224]).max() < 2e-3
    assert pl.inner == (0, 0, 224, 224)


def test_crop_map_is_zero_where_the_model_never_saw_the_image():
    back = Geometry("crop", 0.5).to_image(np.ones((32, 32), np.float32), (100, 200))
    seen = np.argwhere(back > 0)
    # 0.5: shorter side to 64, i.e. the central half of the shorter side is kept (rows 25..74)
    assert tuple(seen.min(0)) == (25, 75) and tuple(seen.max(0)) == (74, 124)
    assert back[:25].max() == 0 and back[:, :75].max() == 0 and back[75:].max() == 0


def test_letterbox_pads_with_the_baseline_and_drops_the_padding_from_the_map(tmp_path):
    path = pooled_linear(tmp_path / "m.onnx", np.eye(3), size=(32, 32))
    clf = Classifier(path, preprocess="imagenet", resize="letterbox", device="cpu")
    wide = np.full((20, 80, 3), 255.0, np.float32)
    x = clf.prepare(wide)
    assert np.all(x[:, :12] == 0) and np.all(x[:, 20:] == 0)  # padding = model-space zero (the baseline)
    assert np.all(x[:, 12:20] > 0)                              # the 8 rows that hold the image
    sal = np.zeros((32, 32), np.float32)
    sal[12:20, :16] = 1.0                                       # left half of the image part
    back = clf.geometry.to_image(sal, (20, 80))
    assert back.shape == (20, 80) and back[:, :35].min() > 0.9 and back[:, 45:].max() < 0.1


def test_unknown_resize_and_bad_crop_pct_are_one_clear_line(tmp_path):
    path = pooled_linear(tmp_path / "m.onnx", np.eye(3))
    with pytest.raises(BlackboxCamError, match="choose one of squash, crop, letterbox"):
        Classifier(path, resize="stretch", device="cpu")
    (tmp_path / "m.json").write_text('{"resize": "crop", "crop_pct": 1.5}')
    with pytest.raises(BlackboxCamError, match='"crop_pct" must be a number in \\(0, 1\\]'):
        Classifier(path, device="cpu")


def test_crop_pct_is_never_ignored_whatever_the_resize_mode(tmp_path, planted_path):
    """Regression (issue 23): --crop-pct without --resize crop was silently ignored. It is now the
    kept fraction in every mode (timm's crop_pct with crop_mode squash/border, HF's crop_pct):
    the image is resized to input / crop_pct, then centre-cropped."""
    path = pooled_linear(tmp_path / "m.onnx", np.eye(3), size=(8, 8))
    for mode, resized in (("squash", (16, 16)), ("crop", (16, 32)), ("letterbox", (8, 16))):
        clf = Classifier(path, resize=mode, crop_pct=0.5, device="cpu")
        assert clf.geometry.resized_size((10, 20), (8, 8)) == resized, mode
        assert clf.geometry.resized_size((10, 20), (8, 8)) != Classifier(path, resize=mode, crop_pct=1.0,
                                                                         device="cpu").geometry.resized_size((10, 20), (8, 8))
    img = tmp_path / "a.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(img)
    runs = {}
    for pct in ("1.0", "0.5"):
        out = tmp_path / f"o{pct}"
        r = CliRunner().invoke(main, ["explain", str(planted_path), str(img), "-m", "occlusion", "--budget", "20",
                                      "--resize", "squash", "--crop-pct", pct, "--out", str(out)])
        assert r.exit_code == 0, r.output
        runs[pct] = np.load(out / "a_occlusion.npy")
    # half the image seen: the map is zero on the border the model never saw, unlike the full squash
    assert runs["0.5"][:7].max() == 0 and runs["1.0"][:7].max() > 0


def _border_and_centre(h: int = 120, w: int = 160) -> np.ndarray:
    """Red everywhere except a blue centre (a third of each side): what a crop keeps is blue."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = 255
    img[h // 3: 2 * h // 3, w // 3: 2 * w // 3] = (0, 0, 255)
    return img


def test_crop_pipeline_bgr_model_with_labels_in_its_metadata(tmp_path):
    """A PaddleClas-like export: shorter side to 256-equivalent, centre crop, BGR, ImageNet
    mean/std, class names in ``metadata_props`` (no labels file anywhere)."""
    # channel 0 is BLUE for a BGR model: class "blue" reads channel 0, class "red" channel 2
    path = pooled_linear(tmp_path / "paddle.onnx", np.array([[0.0, 0.0, 4.0], [4.0, 0.0, 0.0]]), size=(32, 32),
                         metadata={"label_list": "ignored", "labels": "red\nblue"})
    (tmp_path / "paddle.json").write_text(json.dumps({"preprocess": "imagenet", "bgr": True, "resize": "crop",
                                                      "crop_pct": 0.34}))
    img = tmp_path / "flag.png"
    Image.fromarray(_border_and_centre()).save(img)
    clf = Classifier(path, device="cpu")
    assert clf.labels == ["red", "blue"] and clf.geometry == Geometry("crop", 0.34)
    res = explain_image(clf, np.asarray(Image.open(img), np.float32), "occlusion", budget=40)
    assert clf.label(res.predicted) == "blue"       # the crop sees the centre only
    squash = Classifier(path, resize="squash", device="cpu")
    assert squash.label(int(np.argmax(squash.probabilities(squash.prepare(
        np.asarray(Image.open(img), np.float32))[None])[0]))) == "red"  # the whole image is mostly red
    # the map is zero outside the crop (the model never saw the red border)
    assert res.saliency.shape == (120, 160) and res.saliency[:20].max() == 0 and res.saliency[:, :40].max() == 0
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["explain", str(path), str(img), "-m", "occlusion", "--budget", "40",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "explain.json").read_text())[0]
    assert rec["predicted_label"] == "blue" and rec["label"] == "blue"


# -- binary heads ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["logit", "sigmoid", "squeezed"])
def test_binary_head_is_two_classes_not_a_one_class_softmax(tmp_path, head):
    """A width-1 output used to be a 1-class softmax: always 1.0, so every map was noise."""
    from onnx import TensorProto, helper
    w = np.array([[6.0, 0.0, -6.0]])  # positive = red minus blue
    squeeze = dict(post=[helper.make_node("Squeeze", ["z", "one"], ["out"])], out_dims=["N"],  # [N, 1] -> [N]
                   inits=[helper.make_tensor("one", TensorProto.INT64, [1], [1])]) if head == "squeezed" else {}
    path = pooled_linear(tmp_path / "bin.onnx", w, size=(16, 16), head="sigmoid" if head == "sigmoid" else None,
                         relu=True, **squeeze)
    clf = Classifier(path, preprocess="symmetric", device="cpu")
    assert clf.binary and clf.num_classes == 2
    assert clf.outputs_probabilities == (head == "sigmoid")
    red, blue = np.zeros((16, 16, 3), np.float32), np.zeros((16, 16, 3), np.float32)
    red[..., 0], blue[..., 2] = 255, 255
    p = clf.probabilities(np.stack([clf.prepare(red), clf.prepare(blue)]))
    assert p.shape == (2, 2) and np.allclose(p.sum(1), 1)
    assert p[0, 1] > 0.99 and p[1, 0] > 0.99  # red is positive (class 1), blue negative (class 0)
    # a map that finds the evidence: the red half of a half-red, half-blue image drives "positive"
    half = blue.copy()
    half[:, :8] = red[:, :8]
    pos = explain_image(clf, half, "occlusion", target=1, budget=60, window=4)
    neg = explain_image(clf, half, "occlusion", target=0, budget=60, window=4)
    assert pos.saliency[:, :8].mean() > pos.saliency[:, 8:].mean() + 0.3
    assert neg.saliency[:, 8:].mean() > neg.saliency[:, :8].mean() + 0.3
    # white-box: the gradient of +score (class 1) lights the red half, of -score (class 0) the blue
    cam_pos = explain_image(clf, half, "gradcam", target=1).saliency
    cam_neg = explain_image(clf, half, "gradcam", target=0).saliency
    assert cam_pos[:, :8].mean() > cam_pos[:, 8:].mean() + 0.3
    assert cam_neg[:, 8:].mean() > cam_neg[:, :8].mean() + 0.3


def test_binary_head_probability_output_in_unit_range_is_not_squashed_again(tmp_path):
    from onnx import helper
    # a probability without a Sigmoid node: Clip(0, 1) of an affine score
    from onnx import TensorProto
    post = [helper.make_node("Clip", ["z", "lo", "hi"], ["out"])]
    path = pooled_linear(tmp_path / "p.onnx", np.array([[0.5, 0.0, 0.0]]), size=(8, 8), post=post,
                         inits=[helper.make_tensor("lo", TensorProto.FLOAT, [], [0.0]),
                                helper.make_tensor("hi", TensorProto.FLOAT, [], [1.0])])
    clf = Classifier(path, preprocess="unit", device="cpu")
    assert clf.binary and clf.outputs_probabilities
    grey = np.full((8, 8, 3), 127.5, np.float32)
    assert np.allclose(clf.probabilities(clf.prepare(grey)[None])[0], [0.75, 0.25], atol=1e-3)


def test_a_1x1_spatial_head_scores_and_explains_as_the_flat_one(tmp_path):
    """``[N, C, 1, 1]`` outputs (1 x 1 convolution heads of Caffe-era exports, e.g. the ONNX zoo's
    DenseNet-121 ``fc6_1``) are class scores: same probabilities and the same Grad-CAM as ``[N, C]``."""
    from onnx import TensorProto, helper
    w = np.abs(np.random.default_rng(3).normal(size=(4, 3)))  # positive: the CAM is not all clipped away
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    flat = pooled_linear(tmp_path / "flat.onnx", w, size=(16, 16), relu=True)
    head = pooled_linear(tmp_path / "head.onnx", w, size=(16, 16), relu=True, inits=[axes],
                         post=[helper.make_node("Unsqueeze", ["z", "axes"], ["out"])], out_dims=["N", 4, 1, 1])
    a, b = Classifier(flat, device="cpu"), Classifier(head, device="cpu")
    assert b.num_classes == 4 and not b.binary
    x = np.random.default_rng(0).uniform(0, 255, (16, 16, 3)).astype(np.float32)
    assert np.abs(a.probabilities(a.prepare(x)[None]) - b.probabilities(b.prepare(x)[None])).max() < 1e-6
    ga = explain_image(a, x, "gradcam", target=2).saliency
    gb = explain_image(b, x, "gradcam", target=2).saliency
    assert ga.max() > 0 and np.abs(ga - gb).max() < 1e-5
