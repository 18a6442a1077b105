"""CAManim (`blackbox-cam animate`): frames equal `explain --layer`, global normalisation keeps raw
ratios, ybROAD sees planted evidence, GIF/MP4 files are right, DE-CAM frames follow the search."""
from __future__ import annotations

import csv
import io

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper
from PIL import Image

from blackbox_cam import Classifier, metrics
from blackbox_cam.jobs.animate import job as A
from blackbox_cam.pictures import movie
from blackbox_cam.methods.cams import resize_bilinear, upsample_cams
from blackbox_cam.cli import main
from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.explainer.pipeline import explain_image
from blackbox_cam.io.images import load_image

from conftest import IMAGES, ROOT, save_model

REF = ROOT / "tests" / "data" / "gradcam_reference"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def resnetish():
    return Classifier(REF / "resnetish.onnx", device="cpu")


@pytest.fixture(scope="module")
def chelsea():
    return load_image(IMAGES / "chelsea.png")


@pytest.fixture()
def planted_image(heldout):
    i = int(np.flatnonzero(heldout["labels"] == 3)[0])  # a triangle
    return heldout["images"][i].astype(np.float32)


@pytest.fixture(scope="module")
def planted_anim(planted):
    data = np.load(ROOT / "models" / "planted" / "heldout.npz")
    i = int(np.flatnonzero(data["labels"] == 3)[0])
    return A.animate(planted, data["images"][i].astype(np.float32), "gradcam", road=True)


# --------------------------------------------------------------------------- white-box frames


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_every_layer_frame_equals_explain_at_that_layer(resnetish, chelsea, method):
    anim = A.layer_frames(resnetish, chelsea, method)
    assert [f.name for f in anim.frames] == [l.name for l in A.select_layers(resnetish, "all")]
    for f in anim.frames:
        ref = explain_image(resnetish, chelsea, method, layer=f.name)
        assert f.layer_map.shape == chelsea.shape[:2]
        np.testing.assert_allclose(f.layer_map, ref.saliency, atol=1e-6, err_msg=f.name)
        np.testing.assert_allclose(f.raw, ref.explanation.extra["cam"], rtol=1e-5, atol=1e-7, err_msg=f.name)


def test_frames_follow_the_selected_layers_in_graph_order(resnetish, chelsea):
    from blackbox_cam.methods.gradcam import list_layers

    four = [l for l in list_layers(resnetish) if l.shape is not None and len(l.shape) == 4]
    spatial = [l.name for l in four if tuple(l.shape[2:]) != (1, 1)]
    assert [f.name for f in A.layer_frames(resnetish, chelsea, layers="all").frames] == spatial
    picked = [spatial[5], spatial[1], spatial[3]]
    frames = A.layer_frames(resnetish, chelsea, layers=",".join(picked)).frames
    assert [f.name for f in frames] == [spatial[1], spatial[3], spatial[5]]
    assert [f.index for f in frames] == [1, 2, 3]
    blocks = A.layer_frames(resnetish, chelsea, layers="blocks").frames
    assert 1 < len(blocks) < len(spatial)


def test_global_norm_is_one_linear_scale_over_the_raw_cams(resnetish, chelsea):
    anim = A.layer_frames(resnetish, chelsea, "gradcam")
    raws = {f.name: explain_image(resnetish, chelsea, "gradcam", layer=f.name).explanation.extra["cam"]
            for f in anim.frames}
    hi = max(float(r.max()) for r in raws.values())
    assert anim.global_range[1] == pytest.approx(hi, rel=1e-5) and anim.global_range[0] == pytest.approx(0, abs=1e-7)
    size = tuple(resnetish.input_size)
    for f in anim.frames:
        up = resize_bilinear(raws[f.name], size) / hi
        expected = np.clip(np.asarray(Image.fromarray(up.astype(np.float32), mode="F").resize(
            chelsea.shape[1::-1], Image.BILINEAR)), up.min(), up.max())
        np.testing.assert_allclose(f.global_map, expected, atol=1e-5, err_msg=f.name)


def test_global_norm_is_not_the_layer_maps_rescaled(planted_anim):
    """CAManim's `both` applied the global scale to already layer-scaled maps, so every frame still
    peaked at 1; ours keep the raw ratios: peaks follow each layer's raw maximum."""
    peaks = np.array([f.global_map.max() for f in planted_anim.frames])
    raw = np.array([f.raw.max() for f in planted_anim.frames])
    assert peaks.max() > 0.9 and peaks.min() < 0.2
    assert np.corrcoef(peaks, raw / raw.max())[0, 1] > 0.99
    assert all(f.layer_map.max() > 0.9 for f in planted_anim.frames)


# --------------------------------------------------------------------------- ybROAD


def test_ybroad_per_frame_equals_road_at_20_40_60_80(planted, planted_anim):
    assert planted_anim.params["ybroad_queries"] == 1 + 8 * len(planted_anim.frames)
    for f in (planted_anim.frames[0], planted_anim.frames[-1]):
        ref = metrics.road(planted.probabilities, planted_anim.x, f.model_map, planted_anim.target,
                           fractions=(0.2, 0.4, 0.6, 0.8))
        assert f.road.combined == pytest.approx(ref.combined, abs=1e-6)
        assert f.road.morf == pytest.approx(ref.morf, abs=1e-6) and f.road.lerf == pytest.approx(ref.lerf, abs=1e-6)
    yb = planted_anim.ybroad
    roads = [f.road.combined for f in planted_anim.frames]
    assert yb["max"] == max(roads) and yb["mean"] == pytest.approx(np.mean(roads))


def test_ybroad_of_the_planted_models_last_layer_beats_a_random_map(planted, planted_anim):
    rng = np.random.default_rng(0)
    x = planted_anim.x
    random = [metrics.road(planted.probabilities, x, rng.random(x.shape[1:]), planted_anim.target,
                           fractions=A.YBROAD_FRACTIONS).combined for _ in range(3)]
    last = planted_anim.frames[-1].road.combined
    assert last > max(random) + 0.1, (last, random)
    assert planted_anim.ybroad["max"] >= last


# --------------------------------------------------------------------------- files


def test_gif_has_one_frame_per_layer_with_the_asked_duration(tmp_path, planted_anim):
    written = A.write_animation(planted_anim, tmp_path, "tri", norm="both", fps=4)
    for tag in ("layer", "global"):
        with Image.open(written[f"{tag}_gif"]) as im:
            assert im.n_frames == len(planted_anim.frames)
            durations = []
            for k in range(im.n_frames):
                im.seek(k)
                durations.append(im.info["duration"])
        assert durations == [250] * len(planted_anim.frames)
    assert movie.gif_duration_ms(3) == 330 and movie.gif_duration_ms(100) == 20


def test_ybroad_csv_and_plot_are_written(tmp_path, planted_anim):
    written = A.write_animation(planted_anim, tmp_path, "tri", norm="layer")
    rows = list(csv.DictReader(io.StringIO(written["ybroad_csv"].read_text())))
    assert list(rows[0]) == ["index", "layer", "shape", "road", "morf", "lerf"]
    assert [r["layer"] for r in rows] == [f.name for f in planted_anim.frames]
    assert [float(r["road"]) for r in rows] == pytest.approx([f.road.combined for f in planted_anim.frames], abs=1e-6)
    assert rows[0]["shape"] == "16x64x64"
    with Image.open(written["ybroad_png"]) as im:
        assert im.width > 600
    assert "global_gif" not in written


def test_mp4_has_one_frame_per_layer(tmp_path, planted_anim):
    av = pytest.importorskip("av", reason="the test extra installs av")
    written = A.write_animation(planted_anim, tmp_path, "tri", norm="layer", fmt="mp4", fps=5)
    with av.open(str(written["layer_mp4"])) as c:
        frames = list(c.decode(video=0))
        assert float(c.streams.video[0].average_rate) == pytest.approx(5)
    assert len(frames) == len(planted_anim.frames)


def test_mp4_without_pyav_says_how_to_get_it(tmp_path, planted_path, planted_image, monkeypatch):
    monkeypatch.setattr(movie, "have_mp4", lambda: False)
    Image.fromarray(planted_image.astype(np.uint8)).save(tmp_path / "t.png")
    r = run("animate", planted_path, tmp_path / "t.png", "--format", "mp4", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "pip install" in r.output and "--format gif" in r.output


# --------------------------------------------------------------------------- black-box frames


def test_decam_frames_are_its_generations_and_end_at_the_explain_map(planted, planted_image):
    anim = A.search_frames(planted, planted_image, budget=300, seed=3)
    ref = explain_image(planted, planted_image, "decam", budget=300, seed=3)
    gens = [f.info["generation"] for f in anim.frames]
    assert gens == list(range(len(gens))) and len(gens) == ref.explanation.params.get("generations", len(gens))
    np.testing.assert_allclose(anim.frames[-1].layer_map, ref.saliency, atol=1e-6)
    queries = [f.info["queries"] for f in anim.frames]
    assert queries == sorted(queries) and queries[-1] <= 300
    fitness = [f.info["best_fitness"] for f in anim.frames]
    assert all(b <= a + 1e-12 for a, b in zip(fitness, fitness[1:]))
    assert all(f.mask is not None and f.mask.shape == planted_image.shape[:2] for f in anim.frames)


# --------------------------------------------------------------------------- CLI


def test_cli_writes_gifs_sheets_ybroad_and_maps_equal_to_explain(tmp_path, planted_path, planted_image):
    Image.fromarray(planted_image.astype(np.uint8)).save(tmp_path / "tri.png")
    out = tmp_path / "out"
    r = run("animate", planted_path, tmp_path / "tri.png", "--save-maps", "--fps", "2", "--out", out)
    assert r.exit_code == 0, r.output
    names = {p.name for p in out.iterdir()}
    assert {"tri_gradcam_layer.gif", "tri_gradcam_global.gif", "tri_gradcam_layer_sheet.png",
            "tri_gradcam_global_sheet.png", "tri_gradcam_ybroad.csv", "tri_gradcam_ybroad.png",
            "tri_gradcam_layers.npz"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    maps = np.load(out / "tri_gradcam_layers.npz")
    for layer in ("/conv2/Conv_output_0", "/relu4/Relu_output_0"):
        e = run("explain", planted_path, tmp_path / "tri.png", "-m", "gradcam", "--layer", layer, "--out",
                tmp_path / layer.split("/")[1])
        assert e.exit_code == 0, e.output
        np.testing.assert_allclose(maps[layer], np.load(tmp_path / layer.split("/")[1] / "tri_gradcam.npy"), atol=1e-6)
    with Image.open(out / "tri_gradcam_layer.gif") as im:
        assert im.n_frames == len(maps.files) and im.info["duration"] == 500


def test_cli_decam_writes_the_search_animation(tmp_path, planted_path, planted_image):
    Image.fromarray(planted_image.astype(np.uint8)).save(tmp_path / "tri.png")
    out = tmp_path / "out"
    r = run("animate", planted_path, tmp_path / "tri.png", "-m", "decam", "--budget", "200", "--no-road",
            "--out", out)
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} == {"tri_decam_search.gif", "tri_decam_search_sheet.png"}


def test_cli_decam_search_takes_the_method_options_explain_takes(tmp_path, planted_path, planted_image):
    """animate -m decam takes DE-CAM's options (e.g. --refine) as explain does: the last frames
    come from the refined genome and the final map equals explain's with the same options."""
    Image.fromarray(planted_image.astype(np.uint8)).save(tmp_path / "tri.png")
    r = run("animate", planted_path, tmp_path / "tri.png", "-m", "decam", "--budget", "200", "--refine", "0.5",
            "--no-road", "--save-maps", "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    saved = np.load(tmp_path / "out" / "tri_decam_layers.npz")  # one map per generation, in order
    clf = Classifier(planted_path, device="cpu")
    ref = explain_image(clf, load_image(tmp_path / "tri.png"), "decam", budget=200, seed=0, refine=0.5)
    plain = explain_image(clf, load_image(tmp_path / "tri.png"), "decam", budget=200, seed=0)
    last = saved[saved.files[-1]]
    np.testing.assert_allclose(last, ref.saliency, atol=1e-6)
    assert not np.allclose(last, plain.saliency, atol=1e-6)
    for args in (("-m", "gradcam", "--layer", "x"), ("-m", "decam", "--window", "4")):
        r = run("animate", planted_path, tmp_path / "tri.png", *args, "--out", tmp_path / "o")
        assert r.exit_code == 2 and "Traceback" not in r.output and "error:" in r.output, r.output


def test_unknown_layer_is_named_with_close_suggestions(tmp_path, planted_path, planted_image):
    Image.fromarray(planted_image.astype(np.uint8)).save(tmp_path / "tri.png")
    r = run("animate", planted_path, tmp_path / "tri.png", "--layers", "/relu4/Relu_output_0,/relu9/Relu_output_0",
            "--out", tmp_path / "o")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "'/relu9/Relu_output_0' is not a tensor" in r.output and "did you mean" in r.output
    assert "'/relu4/Relu_output_0'" in r.output.split("did you mean")[1]


def _flat_classifier(path):
    """Flatten -> Gemm: a classifier with no 4-D feature map at all."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Flatten", ["image"], ["f"]), helper.make_node("Gemm", ["f", "W", "b"], ["logits"], transB=1)]
    inits = [helper.make_tensor("W", TensorProto.FLOAT, [4, 3 * 16 * 16], rng.normal(size=(4, 768)).ravel()),
             helper.make_tensor("b", TensorProto.FLOAT, [4], np.zeros(4))]
    graph = helper.make_graph(nodes, "flat", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)
    return save_model(graph, path)


def test_model_without_feature_maps_points_to_decam(tmp_path, planted_image):
    model = _flat_classifier(tmp_path / "flat.onnx")
    Image.fromarray(planted_image.astype(np.uint8)).save(tmp_path / "tri.png")
    r = run("animate", model, tmp_path / "tri.png", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "no 4-D feature map" in r.output and "-m decam" in r.output
    ok = run("animate", model, tmp_path / "tri.png", "-m", "decam", "--budget", "100", "--out", tmp_path / "o")
    assert ok.exit_code == 0, ok.output
    with Image.open(tmp_path / "o" / "tri_decam_search.gif") as im:
        assert im.n_frames >= 2


def test_unwritable_out_is_one_line(tmp_path, planted_path, planted_image):
    Image.fromarray(planted_image.astype(np.uint8)).save(tmp_path / "tri.png")
    (tmp_path / "file").write_text("x")
    r = run("animate", planted_path, tmp_path / "tri.png", "--out", tmp_path / "file" / "sub")
    assert r.exit_code == 2 and "cannot be written" in r.output and "Traceback" not in r.output


def test_api_rejects_a_black_box_method_for_layers(planted, planted_image):
    with pytest.raises(BlackboxCamError, match="not a white-box method"):
        A.layer_frames(planted, planted_image, "rise")


def test_bad_image_in_a_folder_is_reported_and_the_rest_animated(tmp_path, planted_path, planted_image):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(planted_image.astype(np.uint8)).save(d / "a.png")
    (d / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    r = run("animate", planted_path, d, "--no-road", "--norm", "layer", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "b.png" in r.output and "Traceback" not in r.output
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"a_gradcam_layer.gif", "a_gradcam_layer_sheet.png"}
