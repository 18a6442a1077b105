"""The vendor's own function as the pipeline, labels as vendors ship them, --score log-odds (issue 28).

The vendor model is PaddleOCR's text direction classifier as shipped in ``rapidocr_onnxruntime``
1.4.4 (``models/ppocr_cls``); its pipeline is a Python function only. The references in
``tests/data/vendors/ppocr`` were made by the vendor's own ``TextClassifier`` in a venv of its
own and by pytorch-grad-cam on the onnx2torch conversion (``tests/data/vendors/make_ppocr.py``);
these tests need neither.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from blackbox_cam import Classifier
from blackbox_cam.cli import main
from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.explainer.pipeline import explain_image
from blackbox_cam.io.images import load_image
from blackbox_cam.model.geometry import placed_to_image
from blackbox_cam.model.labels import labels_from_text

ROOT = Path(__file__).resolve().parents[1]
PPOCR = ROOT / "models" / "ppocr_cls" / "ppocr_cls.onnx"
DATA = Path(__file__).parent / "data" / "vendors" / "ppocr"
EFFNET = ROOT / "models" / "efficientnet_lite0.onnx"
EFFNET_FN = ROOT / "models" / "efficientnet_lite0_fn.py"
PLANTED = ROOT / "models" / "planted" / "planted.onnx"

#: the vendor's function uses OpenCV (opencv-python-headless, in the test extra)
needs_cv2 = pytest.mark.skipif(importlib.util.find_spec("cv2") is None, reason="the vendor's function needs OpenCV")


@pytest.fixture(scope="module")
def ppocr() -> Classifier:
    return Classifier(PPOCR)


def text_mask(image: np.ndarray) -> np.ndarray:
    """Where the text is: pixels whose colour is far from the line's background (the border's
    median colour), grown by 2 px (the strokes' antialiased edges)."""
    from scipy.ndimage import binary_dilation

    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    bg = np.median(border, axis=0)
    return binary_dilation(np.abs(image - bg).max(axis=2) > 60, iterations=2)


# -- the vendor model, through verify --------------------------------------------------------------
@needs_cv2
def test_verify_with_the_vendors_function_passes_and_says_what_it_imports(tmp_path):
    r = CliRunner().invoke(main, ["verify", str(PPOCR), "--expect", str(DATA / "expected_ppocr_cls.csv"),
                                  "--table", str(tmp_path / "v.csv")])
    assert r.exit_code == 0, r.output
    gap = float(re.search(r"largest log-odds gap ([0-9.]+)", r.output).group(1))
    assert gap <= 0.05
    assert "top-1 agreement 16/16" in r.output
    assert f"imported {PPOCR.parent.resolve() / 'ppocr_cls_fn.py'}" in r.output  # the trust line
    assert "labels: " in r.output and "read as JSON list" in r.output


@needs_cv2
def test_the_closest_declarative_sidecar_does_not_pass(tmp_path):
    side = tmp_path / "closest.json"
    side.write_text(json.dumps({"preprocess": "symmetric", "resize": "squash", "bgr": True, "input_size": [48, 192]}))
    r = CliRunner().invoke(main, ["verify", str(PPOCR), "--sidecar", str(side), "--labels",
                                  str(PPOCR.parent / "ppocr_cls_labels.json"), "--expect",
                                  str(DATA / "expected_ppocr_cls.csv"), "--table", str(tmp_path / "v.csv")])
    assert r.exit_code == 1
    assert float(re.search(r"largest log-odds gap ([0-9.]+)", r.output).group(1)) > 1.0


@needs_cv2
def test_probed_geometry_finds_the_vendors_fit_and_right_padding(ppocr):
    short = load_image(DATA / "images" / "line6.png")       # "Beagle": under 4:1, padded right
    h, w = short.shape[:2]
    pl = ppocr.geometry.place((h, w))
    want_w = int(np.ceil(48 * w / h))
    top, left, nh, nw = pl.inner
    assert (top, left, nh) == (0, 0, 48) and abs(nw - want_w) <= 1
    assert f"padding right {192 - nw} px" in pl.describe()
    assert pl.box == (0.0, 0.0, float(w), float(h))
    assert abs(pl.scale[0] - 48 / h) < 0.02
    long = load_image(DATA / "images" / "line0.png")         # over 4:1: squashed to 192
    assert "no padding" in ppocr.geometry.place(long.shape[:2]).describe()


@needs_cv2
def test_gradcam_through_the_probed_geometry_equals_pytorch_grad_cam(ppocr):
    ref = np.load(DATA / "gradcam_reference.npz")
    assert len(ref.files) == 16
    for name in ref.files:
        im = load_image(DATA / "images" / name)
        res = explain_image(ppocr, im, "gradcam")
        assert res.explanation.params["layer"] == "pool2d_9.tmp_0"
        np.testing.assert_allclose(res.explanation.saliency, ref[name], atol=1e-4, err_msg=name)
        pl = ppocr.geometry.place(im.shape[:2])
        on_image = np.clip(placed_to_image(ref[name], pl.image_hw, pl.box, pl.inner), 0, 1)
        assert res.saliency.shape == im.shape[:2]
        np.testing.assert_allclose(res.saliency, on_image, atol=1e-4, err_msg=name)


@needs_cv2
def test_black_box_map_is_image_sized_and_on_the_text():
    """The line pasted on a blank canvas twice its width (as a loose crop would be): the vendor's
    signal is the text, so DE-CAM's map must put most of its mass on the text's half."""
    clf = Classifier(PPOCR, score="log-odds")
    im = load_image(DATA / "images" / "line3_180.png")
    h, w = im.shape[:2]
    canvas = np.empty((h, 2 * w, 3), np.float32)
    canvas[:] = np.median(np.concatenate([im[0], im[-1]]), axis=0)
    canvas[:, w // 2:w // 2 + w] = im
    text = np.zeros(canvas.shape[:2], bool)
    text[:, w // 2:w // 2 + w] = True
    res = explain_image(clf, canvas, "decam", budget=600, seed=0)
    assert clf.label(res.target) == "180"
    assert res.saliency.shape == canvas.shape[:2]
    assert res.explanation.warning is None
    assert float(res.saliency[text].sum() / res.saliency.sum()) > 0.65
    assert text.flat[np.argmax(res.saliency)]


@needs_cv2
def test_saturated_probability_warns_and_names_the_flag():
    clf = Classifier(PPOCR)
    im = load_image(DATA / "images" / "line3_180.png")
    res = explain_image(clf, im, "occlusion", window=12)
    assert res.explanation.warning and "--score log-odds" in res.explanation.warning


# -- the same pipeline, declared or as a function -----------------------------------------------------
def test_efficientnet_as_a_function_equals_the_sidecar():
    side = Classifier(EFFNET)
    fn = Classifier(EFFNET, preprocess_fn=f"{EFFNET_FN}:preprocess")
    assert fn.baseline.colour == pytest.approx((127.0, 127.0, 127.0), abs=1e-3)  # (v - 127) / 128 = 0
    assert fn.function_floats
    im = load_image(ROOT / "models" / "images" / "chelsea.png")
    np.testing.assert_allclose(fn.probabilities(fn.prepare(im)[None]), side.probabilities(side.prepare(im)[None]),
                               atol=1e-6)
    for m in ("gradcam", "gradcam++"):
        np.testing.assert_allclose(explain_image(fn, im, m).saliency, explain_image(side, im, m).saliency, atol=1e-5)
    small = im[:224, 100:324]                                # at the model's input size: mask before == after
    a = explain_image(side, small, "rise", budget=60, seed=3).saliency
    b = explain_image(fn, small, "rise", budget=60, seed=3).saliency
    np.testing.assert_allclose(a, b, atol=1e-5)


# -- bad functions: one line, exit 2, nothing written ---------------------------------------------------
BAD = {
    "raises": ("def f(img):\n    raise ValueError('boom')\n", "f.py:f raised ValueError on a 224x224 grey probe image (boom)"),
    "shape": ("import numpy as np\ndef f(img):\n    return np.zeros((3, 32, 32), np.float32)\n",
              "f.py:f returned shape [3, 32, 32]"),
    "dtype": ("import numpy as np\ndef f(img):\n    return np.zeros((3, 64, 64), np.int64)\n", "returned dtype int64"),
    "nan": ("import numpy as np\ndef f(img):\n    return np.full((3, 64, 64), np.nan, np.float32)\n",
            "returned 12288 NaN/inf value(s)"),
    "not an array": ("def f(img):\n    return [1, 2]\n", "f.py:f returned list"),
    "unsteady": ("import numpy as np\ndef f(img):\n    n = 60 if img.shape[:2] == (40, 50) and img.std() < 1 else 64\n"
                 "    return np.zeros((3, n, n), np.float32)\n",
                 "returned shape [3, 60, 60] for a grey 50x40 image (another image of the same size"),
}


def planted_copy(tmp_path: Path) -> Path:
    for p in PLANTED.parent.glob("planted.*"):
        shutil.copy(p, tmp_path / p.name)
    shutil.copy(PLANTED.parent / "planted_labels.txt", tmp_path / "planted_labels.txt")
    (tmp_path / "planted.json").unlink()
    return tmp_path / "planted.onnx"


@pytest.mark.parametrize("case", list(BAD))
def test_bad_function_is_one_line_exit_2_nothing_written(tmp_path, case):
    model = planted_copy(tmp_path)
    (tmp_path / "f.py").write_text(BAD[case][0])
    img = tmp_path / "img.png"
    from PIL import Image
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3)).astype(np.uint8)).save(img)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["explain", str(model), str(img), "-m", "gradcam", "--out", str(out),
                                  "--preprocess-fn", f"{tmp_path / 'f.py'}:f"])
    # wrong on the probes at load: exit 2 before any image; wrong only on this image: the batch records
    # the image as failed (exit 1) and goes on; either way one line and no map
    assert r.exit_code == (1 if case == "unsteady" else 2), r.output
    err = [ln for ln in r.output.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and BAD[case][1] in err[0], r.output
    assert "Traceback" not in r.output
    assert not out.exists() or not list(out.glob("*.npy"))


@pytest.mark.parametrize("spec, message", [
    ("nowhere.py:f", "does not exist"),
    ("{dir}/g.py:missing", "has no function 'missing'"),
    ("{dir}/g.py", "must be FILE.py:NAME"),
])
def test_missing_file_or_function(tmp_path, spec, message):
    (tmp_path / "g.py").write_text("def present(img):\n    return img\n")
    with pytest.raises(BlackboxCamError, match=message):
        Classifier(PLANTED, preprocess_fn=spec.format(dir=tmp_path))


def test_a_sidecar_with_a_function_and_steps_is_refused(tmp_path):
    model = planted_copy(tmp_path)
    (tmp_path / "f.py").write_text("def f(img):\n    return img\n")
    (tmp_path / "planted.json").write_text(json.dumps({"preprocess_fn": "f.py:f", "mean": [0, 0, 0]}))
    with pytest.raises(BlackboxCamError, match=r'sets "preprocess_fn" and mean'):
        Classifier(model)


def test_sidecar_function_is_relative_to_the_sidecar_and_recorded_with_its_sha256(tmp_path):
    model = planted_copy(tmp_path)
    (tmp_path / "fns").mkdir()
    fn = tmp_path / "fns" / "pre.py"
    fn.write_text(textwrap.dedent("""
        import numpy as np
        from PIL import Image
        def pre(img):
            im = Image.fromarray(np.asarray(img, np.uint8)).resize((64, 64), Image.BILINEAR)
            return (np.asarray(im, np.float32) / 255).transpose(2, 0, 1)
    """))
    (tmp_path / "planted.json").write_text(json.dumps({"preprocess_fn": "fns/pre.py:pre",
                                                        "labels": "planted_labels.txt"}))
    img = load_image(ROOT / "models" / "images" / "coffee.png")
    from PIL import Image
    Image.fromarray(img.astype(np.uint8)).save(tmp_path / "coffee.png")
    r = CliRunner().invoke(main, ["explain", str(model), str(tmp_path / "coffee.png"), "-m", "gradcam",
                                  "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert f"imported {fn.resolve()}" in r.output
    rec = json.loads((tmp_path / "out" / "explain.json").read_text())[0]
    import hashlib
    assert rec["pipeline"]["preprocess_fn"]["sha256"] == hashlib.sha256(fn.read_bytes()).hexdigest()
    from blackbox_cam.jobs.dataset import MapCache
    key1 = MapCache(tmp_path / "c", Classifier(model)).key("d", "gradcam", target=None, budget=None, seed=0)
    fn.write_text(fn.read_text() + "\n# changed\n")
    key2 = MapCache(tmp_path / "c", Classifier(model)).key("d", "gradcam", target=None, budget=None, seed=0)
    assert key1 != key2                                        # a changed function is a changed pipeline


def test_python_callable_and_not_geometric_refusal():
    def flipped(img):
        from PIL import Image
        im = Image.fromarray(np.asarray(img, np.uint8)).resize((64, 64)).transpose(Image.FLIP_LEFT_RIGHT)
        return (np.asarray(im, np.float32) / 255).transpose(2, 0, 1)

    clf = Classifier(PLANTED, preprocess=flipped)
    assert clf.preprocess_fn.file is None and clf.preprocess_fn.sha256
    im = np.full((50, 70, 3), 90, np.float32)
    im[10:30, 20:40] = 250
    with pytest.raises(BlackboxCamError, match="not a geometric resampling .*flipped.*black-box methods still work"):
        explain_image(clf, im, "gradcam")
    assert explain_image(clf, im, "rise", budget=40).saliency.shape == (50, 70)


def test_postprocess_fn(tmp_path):
    (tmp_path / "post.py").write_text("def rev(outs):\n    return outs[0][:, ::-1]\n"
                                      "def bad(outs):\n    return outs[0][:1]\n")
    plain = Classifier(PLANTED)
    rev = Classifier(PLANTED, postprocess_fn=f"{tmp_path / 'post.py'}:rev")
    x = plain.prepare(np.full((64, 64, 3), 120, np.float32))[None]
    np.testing.assert_allclose(rev.scores(x), plain.scores(x)[:, ::-1])
    with pytest.raises(BlackboxCamError, match=r"post.py:bad returned shape \[1, 4\] for a batch of 2"):
        Classifier(PLANTED, postprocess_fn=f"{tmp_path / 'post.py'}:bad").scores(np.concatenate([x, x]))


# -- --score log-odds ---------------------------------------------------------------------------------
def sure_model(path: Path, logit: float) -> Path:
    """A 2-class model whose logits are [logit, 0] for every image, behind a Softmax."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 2])
    nodes = [helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Unsqueeze", ["m", "ax"], ["m1"]),
             helper.make_node("Gemm", ["m1", "W", "b"], ["z"]),
             helper.make_node("Softmax", ["z"], ["prob"], axis=1)]
    inits = [helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
             helper.make_tensor("W", TensorProto.FLOAT, [1, 2], [0.0, 0.0]),
             helper.make_tensor("b", TensorProto.FLOAT, [2], [logit, 0.0])]
    g = helper.make_graph(nodes, "sure", [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_log_odds_from_the_logits_are_exact_where_the_probability_saturated(tmp_path):
    logit = float(np.log((1 - 1e-12) / 1e-12))               # p = 1 - 1e-12
    model = sure_model(tmp_path / "sure.onnx", logit)
    x = np.zeros((1, 3, 8, 8), np.float32)
    lo = Classifier(model, preprocess="unit", score="log-odds")
    assert "before the graph's final Softmax" in lo.score_source
    got = lo.explained_scores(x)[0]
    assert got[0] == pytest.approx(np.float32(logit), abs=1e-9) and got[1] == pytest.approx(-np.float32(logit), abs=1e-9)
    p = Classifier(model, preprocess="unit").explained_scores(x)[0]
    assert p[0] == 1.0                                        # float32 probability: saturated, no digits left


def test_log_odds_rows_from_logits():
    from blackbox_cam.model.runtime import log_odds_rows
    z = np.array([[2.0, -1.0, 0.5, 30.0]])
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    want = np.log(p) - np.log1p(-p)
    np.testing.assert_allclose(log_odds_rows(z)[0, :3], want[0, :3], rtol=1e-9)
    assert log_odds_rows(z)[0, 3] == pytest.approx(30.0 - np.log(np.exp(2) + np.exp(-1) + np.exp(0.5)), abs=1e-12)


def test_score_is_a_flag_of_every_command():
    for cmd in ("explain", "verify", "compare", "gate", "global", "animate"):
        out = CliRunner().invoke(main, [cmd, "--help"]).output
        assert "--score" in out and "--preprocess-fn" in out and "--postprocess-fn" in out, cmd


# -- labels as vendors ship them ----------------------------------------------------------------------
@pytest.mark.parametrize("text, fmt", [
    ("cat\ndog\nfox\nowl\n", "one name per line"),
    ('["cat", "dog", "fox", "owl"]', "JSON list"),
    ('{"2": "fox", "0": "cat", "3": "owl", "1": "dog"}', "index -> name mapping"),
    ('{"architectures": ["X"], "id2label": {"3": "owl", "1": "dog", "0": "cat", "2": "fox"}, "label2id": {}}',
     "Hugging Face config.json id2label"),
    ('{"owl": 3, "fox": 2, "cat": 0, "dog": 1}', "name -> index mapping (Keras class_indices)"),
])
def test_labels_in_four_formats_indices_from_the_mapping(text, fmt):
    assert labels_from_text(text, "labels") == (["cat", "dog", "fox", "owl"], fmt)


def test_labels_mapping_target_by_name_and_count_mismatch_names_the_format(tmp_path):
    model = planted_copy(tmp_path)
    keras = tmp_path / "class_indices.json"
    keras.write_text(json.dumps({"triangle": 3, "ring": 2, "square": 0, "cross": 1}))  # key order != indices
    clf = Classifier(model, labels=keras)
    assert clf.labels == ["square", "cross", "ring", "triangle"] and "Keras" in clf.labels_format
    from blackbox_cam.explainer.pipeline import resolve_target
    assert resolve_target(clf, "ring") == 2
    bad = tmp_path / "six.json"
    bad.write_text(json.dumps({"a": 0, "b": 1, "c": 2, "d": 3, "e": 4, "f": 5}))
    with pytest.raises(BlackboxCamError, match=r"read as name -> index mapping \(Keras class_indices\): 6 labels "
                                               r"but the model has 4 classes"):
        Classifier(model, labels=bad)


def test_global_with_a_function_aggregates_images_of_one_size_in_their_pixels(tmp_path):
    """global takes --preprocess-fn: black-box maps are in the images' own pixels, aggregated over
    images of one size (the first's); an image of another size is recorded as failed, the rest go on;
    a white-box method is refused in one line."""
    from PIL import Image
    root = Path(__file__).resolve().parents[1]
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        Image.open(root / "models" / "images" / name).convert("RGB").resize((160, 120)).save(imgs / name)
    Image.open(root / "models" / "images" / "astronaut.png").convert("RGB").resize((90, 90)).save(imgs / "z_odd.png")
    fn = f"{root / 'models' / 'efficientnet_lite0_fn.py'}:preprocess"
    model = str(root / "models" / "efficientnet_lite0.onnx")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["global", model, str(imgs), "--preprocess-fn", fn, "-m", "rise", "--budget", "60",
                                  "--grid", "4", "--out", str(out)])
    assert r.exit_code == 1, r.output       # the odd-sized image failed, the others were aggregated
    rec = json.loads((out / "global.json").read_text())
    assert rec["settings"]["input_size"] == [120, 160] and len(rec["images"]) == 2, rec["settings"]
    assert any("z_odd.png" in f["image"] and "one size" in f["error"] for f in rec["failures"])
    r = CliRunner().invoke(main, ["global", model, str(imgs), "--preprocess-fn", fn, "-m", "gradcam",
                                  "--out", str(tmp_path / "wb")])
    assert r.exit_code == 2 and "black-box method" in r.output and not (tmp_path / "wb").exists()
