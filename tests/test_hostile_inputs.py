"""Hostile inputs (issue 9): huge images, absurd batch sizes, misread sidecars, odd models.

Each test is named for the defect it guards and failed before the fix.
"""
from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper
from PIL import Image

from blackbox_cam import Classifier, explain_image
from blackbox_cam.cli import main
from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.io.images import MAX_SIDE, read_image

from conftest import linear_classifier, save_model
from hostile_util import png_header_only


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -- 1. memory: huge images -------------------------------------------------------------------------
def test_header_claiming_30000x30000_is_refused_and_the_batch_goes_on(tmp_path, planted_path, heldout):
    bomb = png_header_only(tmp_path / "bomb.png", 30000, 30000)
    big = png_header_only(tmp_path / "big.png", 17000, 17000)  # under Pillow's guard, over ours
    good = tmp_path / "good.png"
    Image.fromarray(heldout["images"][0]).save(good)
    out = tmp_path / "out"
    r = run("explain", planted_path, bomb, big, good, "-m", "rise", "--budget", "20", "--out", out)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert "bomb.png: its header size is more than the 268 Mpx" in r.output
    assert "big.png: 17000x17000 pixels (289 Mpx) is more than the 268 Mpx" in r.output
    recs = json.loads((out / "explain.json").read_text())
    assert ["error" in rec for rec in recs] == [True, True, False]
    assert (out / recs[2]["npy"]).exists()


def test_large_image_is_reduced_while_decoding_not_copied_to_float_at_full_size(tmp_path):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)
    png = tmp_path / "large.png"
    Image.fromarray(small).resize((5000, 6000), Image.NEAREST).save(png, compress_level=1)
    jpg = tmp_path / "large.jpg"
    Image.fromarray(small).resize((5000, 6000), Image.NEAREST).save(jpg, quality=90)
    for path in (png, jpg):
        tracemalloc.start()
        img, size = read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert size == (6000, 5000)
        assert max(img.shape[:2]) <= MAX_SIDE and img.dtype == np.float32
        # a float32 RGB copy at full size would be 360 MB; the reduced one is 3000 x 2500 x 12 B
        assert peak < 120e6, f"{path.name}: {peak / 1e6:.0f} MB traced"
        # the same picture at half size (box average / DCT scaling; JPEG adds its own error)
        ref = np.asarray(Image.fromarray(small).resize(img.shape[1::-1], Image.NEAREST), np.float32)
        assert np.median(np.abs(img - ref)) < 4


def test_reduced_image_keeps_exif_rotation_and_reports_the_rotated_size(tmp_path):
    im = Image.new("RGB", (4500, 300), (10, 200, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif)
    img, size = read_image(path)
    assert size == (4500, 300) and img.shape[0] > img.shape[1]


# -- 5. batch buffers sized by min(batch, budget) and a memory cap ----------------------------------
@pytest.mark.parametrize("method", ["rise", "occlusion"])
def test_huge_batch_size_with_small_budget_does_not_allocate_for_the_whole_batch(planted_path, heldout, method):
    clf = Classifier(planted_path, device="cpu", batch_size=100000)
    img = heldout["images"][0].astype(np.float32)
    tracemalloc.start()
    res = explain_image(clf, img, method, budget=300)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res.explanation.queries <= 300
    # 100000 x 3 x 64 x 64 float32 would be 4.9 GB; 300 images are 14.7 MB
    assert peak < 60e6, f"{peak / 1e6:.0f} MB traced"


# -- 4. sidecar values validated, one line per problem ------------------------------------------------
@pytest.mark.parametrize("sidecar, message", [
    ({"bgr": "false"}, '"bgr" must be true or false (JSON booleans, no quotes), got "false"'),
    ({"std": [0, 0, 0]}, '"std" must be positive (it divides the pixels), got [0, 0, 0]'),
    ({"input_size": "64x64"}, '"input_size" must be [height, width] as two integers, e.g. [224, 224], got "64x64"'),
    ({"input_size": [64]}, '"input_size" must be [height, width] as two integers'),
    ({"input_size": [0, 0]}, '"input_size" must be positive, got [0, 0]'),
    ({"mean": [0.1, 0.2, 0.3, 0.4, 0.5]}, '"mean" has 5 values; give 3 (one per channel, in the order the model receives them: RGB, or BGR with "bgr": true) or 1'),
    ({"mean": [0.5, 0.5]}, '"mean" has 2 values; give 3'),
    ({"scale": 0}, '"scale" must be a positive number'),
    ({"layout": "CHW"}, '"layout" must be "NCHW" or "NHWC"'),
    ({"resize": "stretch"}, '"resize" must be one of squash, crop, letterbox'),
    ({"labels": 3}, '"labels" must be a file name'),
])
def test_sidecar_values_are_checked_for_type_and_length(tmp_path, images_dir, sidecar, message):
    model = linear_classifier(tmp_path / "m.onnx", input_shape=("N", 3, "h", "w"))
    (tmp_path / "m.json").write_text(json.dumps({"input_size": [8, 8], **sidecar}))
    r = run("explain", model, images_dir / "rgb.png", "--out", tmp_path / "o")
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output and "--layout" not in r.output


def test_every_sidecar_problem_gets_its_own_line(tmp_path):
    model = linear_classifier(tmp_path / "m.onnx")
    (tmp_path / "m.json").write_text('{"bgr": "false", "std": [0, 0, 0], "mean": [1, 2], "colour": 1}')
    with pytest.raises(BlackboxCamError) as e:
        Classifier(model, device="cpu")
    lines = str(e.value).splitlines()
    assert "4 problems" in lines[0] and len(lines) == 5
    assert all(ln.startswith("  - ") for ln in lines[1:])


def test_bgr_false_string_does_not_flip_channels_silently(tmp_path):
    model = linear_classifier(tmp_path / "m.onnx")
    (tmp_path / "m.json").write_text('{"bgr": false}')
    assert Classifier(model, device="cpu").preprocessing.bgr is False
    (tmp_path / "m.json").write_text('{"bgr": "false"}')
    with pytest.raises(BlackboxCamError, match='"bgr" must be true or false'):
        Classifier(model, device="cpu")


def test_single_value_mean_applies_to_every_channel(tmp_path):
    model = linear_classifier(tmp_path / "m.onnx")
    (tmp_path / "m.json").write_text('{"mean": [0.5], "std": [0.25]}')
    pp = Classifier(model, device="cpu").preprocessing
    assert pp.mean == (0.5, 0.5, 0.5) and pp.std == (0.25, 0.25, 0.25)


# -- 9. layers on a model without 4-D tensors ---------------------------------------------------------
def test_layers_on_a_model_without_4d_tensors_says_so(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 192])
    model = save_model(helper.make_graph([helper.make_node("Flatten", ["x"], ["f"]),
                                          helper.make_node("Relu", ["f"], ["y"])], "flat", [x], [y]),
                       tmp_path / "flat.onnx")
    r = run("layers", model)
    assert r.exit_code == 2 and "no feature map ([N, C, H, W] or [N, H" in r.output and "use a black-box method" in r.output
    assert "Traceback" not in r.output


@pytest.fixture()
def images_dir(tmp_path, heldout):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(heldout["images"][0]).save(d / "rgb.png")
    return d


# -- 9. external data ------------------------------------------------------------------------------------
def test_missing_external_data_file_is_named(tmp_path, images_dir):
    import onnx
    import onnx.numpy_helper
    src = linear_classifier(tmp_path / "src.onnx")
    m = onnx.load(str(src))
    for i, t in enumerate(m.graph.initializer):  # raw_data, which is what goes to external files
        m.graph.initializer[i].CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t), t.name))
    d = tmp_path / "big"
    d.mkdir()
    onnx.save(m, str(d / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.onnx.data", size_threshold=0)
    ok = run("explain", d / "m.onnx", images_dir / "rgb.png", "-m", "rise", "--budget", "8", "--out", tmp_path / "o")
    assert ok.exit_code == 0, ok.output  # with its data file beside it, the model loads
    (d / "m.onnx.data").rename(tmp_path / "elsewhere.data")
    r = run("explain", d / "m.onnx", images_dir / "rgb.png", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "stored as external data in m.onnx.data, which is not in" in r.output
    assert "corrupt" not in r.output
