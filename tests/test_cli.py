"""`blackbox-cam explain` end to end: files written, records kept, bad input handled."""
from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam.cli import main

from conftest import linear_classifier


@pytest.fixture()
def images(tmp_path, heldout):
    d = tmp_path / "imgs"
    d.mkdir()
    rgb = heldout["images"][0]
    Image.fromarray(rgb).save(d / "rgb.png")
    Image.fromarray(rgb).convert("L").save(d / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(d / "rgba.png")
    Image.fromarray((rgb[:, :, 0].astype(np.uint16) * 257)).save(d / "sixteen.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return d


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_explain_writes_maps_overlays_and_records(tmp_path, planted_path, images):
    out = tmp_path / "out"
    r = run("explain", planted_path, images / "rgb.png", images / "gray.png", images / "rgba.png",
            images / "sixteen.png", "-m", "rise,occlusion", "--budget", "60", "--out", out)
    assert r.exit_code == 0, r.output
    recs = json.loads((out / "explain.json").read_text())
    assert len(recs) == 8
    for rec in recs:
        assert {"model", "image", "predicted", "label", "score", "target", "method", "params", "queries",
                "seconds"} <= set(rec)
        assert rec["queries"] <= 60
        sal = np.load(out / rec["npy"])
        assert sal.dtype == np.float32 and sal.shape == (64, 64)
        assert 0.0 <= sal.min() and sal.max() <= 1.0
        assert Image.open(out / rec["png"]).size == (64, 64)
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


def test_bad_image_is_recorded_and_batch_goes_on(tmp_path, planted_path, images):
    out = tmp_path / "out"
    r = run("explain", planted_path, images / "broken.png", images / "missing.png", images / "rgb.png",
            "-m", "rise", "--budget", "20", "--out", out)
    assert r.exit_code == 1
    assert "broken.png: not a readable image" in r.output and "missing.png: no such file" in r.output
    assert "Traceback" not in r.output
    recs = json.loads((out / "explain.json").read_text())
    assert [("error" in rec) for rec in recs] == [True, True, False]
    assert (out / "rgb_rise.npy").exists() and not (out / "broken_rise.npy").exists()


@pytest.mark.parametrize("args, message", [
    (["--target", "99"], "--target 99 is out of range: the model has 4 classes"),
    (["--budget", "0"], "--budget must be a positive number"),
    (["--budget", "-5"], "--budget must be a positive number"),
    (["-m", "nosuch"], "not a method; choose from"),
])
def test_bad_options(tmp_path, planted_path, images, args, message):
    r = run("explain", planted_path, images / "rgb.png", "--out", tmp_path / "o", *args)
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("model, message", [
    ("missing.onnx", "no such file"),
    ("not_onnx.onnx", "not an ONNX model"),
    ("two_inputs.onnx", "has 2 inputs"),
    ("vector.onnx", "not an image tensor"),
])
def test_bad_models(tmp_path, images, model, message):
    (tmp_path / "not_onnx.onnx").write_text("hello")
    linear_classifier(tmp_path / "two_inputs.onnx", inputs=2)
    linear_classifier(tmp_path / "vector.onnx", input_shape=("N", 10))
    r = run("explain", tmp_path / model, images / "rgb.png", "--out", tmp_path / "o")
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and model in lines[0] and message in lines[0]


def test_unwritable_output_directory(tmp_path, planted_path, images):
    if os.geteuid() == 0:  # root ignores permission bits; /proc refuses new folders even to root
        target = "/proc/blackbox-cam-test/out"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        target = ro / "sub"
    r = run("explain", planted_path, images / "rgb.png", "--out", target)
    assert r.exit_code == 2 and "cannot be written" in r.output and "Traceback" not in r.output


def test_output_path_that_is_a_file(tmp_path, planted_path, images):
    f = tmp_path / "afile"
    f.write_text("x")
    r = run("explain", planted_path, images / "rgb.png", "--out", f / "sub")
    assert r.exit_code != 0 and "cannot be written" in r.output and "Traceback" not in r.output


def test_help_is_self_explanatory():
    r = run("--help")
    assert r.exit_code == 0 and "explain" in r.output
    r = run("explain", "--help")
    for word in ("--method", "--budget", "--seed", "--target", "--out", "decam", "rise", "occlusion"):
        assert word in r.output


def test_layers_lists_candidates_and_marks_the_default():
    from conftest import EFFNET
    r = run("layers", EFFNET)
    assert r.exit_code == 0, r.output
    default = [ln for ln in r.output.splitlines() if ln.startswith("*")]
    assert len(default) == 1 and "x1280x7x7" in default[0] and "Clip" in default[0]


@pytest.mark.parametrize("layer, message", [
    ("/_conv_hed/Conv_output_0", "did you mean"),
    ("logits", "4-D"),
])
def test_whitebox_bad_layer_is_one_line_and_exit_2_before_any_image(tmp_path, layer, message):
    """Regression (issue 18): a bad --layer was an error per image with exit 1; it is checked
    against the model once, before any image is read (exit 2, nothing written)."""
    from conftest import EFFNET, IMAGES
    r = run("explain", EFFNET, IMAGES / "coffee.png", IMAGES / "chelsea.png", "-m", "gradcam,rise", "--layer", layer,
            "--out", tmp_path / "o")
    lines = [ln for ln in r.output.splitlines() if ln.strip() and not ln.startswith("backend: ")]
    assert r.exit_code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in r.output, r.output
    assert not list((tmp_path / "o").glob("*.npy"))


def test_gradcam_explain_writes_the_same_files(tmp_path, planted_path, images):
    r = run("explain", planted_path, images / "rgb.png", "-m", "gradcam,layercam", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    recs = json.loads((tmp_path / "explain.json").read_text())
    assert [rec["method"] for rec in recs] == ["gradcam", "layercam"]
    for rec in recs:
        assert np.load(tmp_path / rec["npy"]).shape == (64, 64) and (tmp_path / rec["png"]).exists()
