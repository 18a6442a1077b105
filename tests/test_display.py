"""Results that show themselves: every display helper renders, its PNG decodes, its size is right.

Covers ``bc.explain`` (paths, PIL images, arrays, folders), ``Result.overlay/picture/plot/show/
save`` (the CLI's files, byte for byte), ``bc.plot_methods``, and the pictures of compare, gate,
global and animate results (the one ``Shows`` mixin), plus ``compare --save-maps``.
"""
from __future__ import annotations

import io
import json
import warnings

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (a headless test run; the library itself never calls use())
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from PIL import Image  # noqa: E402

import blackbox_cam as bc  # noqa: E402
from blackbox_cam.cli import main  # noqa: E402
from blackbox_cam.errors import BlackboxCamError  # noqa: E402
from blackbox_cam.pictures.display import MAX_SIDE, display_size  # noqa: E402
from conftest import EFFNET, IMAGES, MODELS  # noqa: E402

CAT = IMAGES / "chelsea.png"
HANS = MODELS / "clever_hans"


def decode(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    im = Image.open(io.BytesIO(png))
    im.load()
    return im


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def cat():
    return bc.explain(EFFNET, CAT, "gradcam")


# -- bc.explain --------------------------------------------------------------------------------


def test_explain_is_the_function_and_takes_paths_pil_images_and_arrays(cat):
    assert callable(bc.explain) and bc.explain.__module__ == "blackbox_cam.api"
    rgb = np.asarray(Image.open(CAT).convert("RGB"))
    for image in (Image.open(CAT), rgb, rgb.astype(np.float32), rgb / 255.0, str(CAT)):
        r = bc.explain(EFFNET, image, "gradcam")
        np.testing.assert_array_equal(r.saliency, cat.saliency)
        assert (r.target, r.label, r.method) == (cat.target, "Egyptian cat", "gradcam")
    assert cat.source == str(CAT) and cat.image_size == (300, 451) and cat.model == str(EFFNET)


def test_explain_equals_explain_image(cat):
    clf = bc.load_model(EFFNET)
    ref = bc.explain_image(clf, bc.load_image(CAT), "rise", budget=50, seed=3)
    got = bc.explain(clf, CAT, "rise", budget=50, seed=3)
    np.testing.assert_array_equal(got.saliency, ref.saliency)
    assert got.explanation.queries == ref.explanation.queries == 50


def test_explain_a_folder_gives_a_list_in_order_and_names_skipped_files():
    with pytest.warns(UserWarning, match="LICENSE.md: skipped, not an image"):
        results = bc.explain(EFFNET, IMAGES, "gradcam", progress=False)
    assert [r.source for r in results] == [str(IMAGES / n) for n in
                                           ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")]
    mixed = bc.explain(EFFNET, [CAT, np.zeros((20, 30, 3), np.uint8)], "gradcam", progress=False)
    assert len(mixed) == 2 and mixed[1].saliency.shape == (20, 30) and mixed[1].source is None


@pytest.mark.parametrize("image, message", [
    (np.zeros((4, 5, 2)), "must be H x W x 3"),
    (np.full((4, 5, 3), 300.0), "must lie in 0..1 or 0..255"),
    (np.full((4, 5, 3), np.nan), "NaN"),
    (np.full((4, 5, 3), -1, np.int16), "must lie in 0..255"),
    (np.array([["a"]]), "hold numbers"),
])
def test_explain_refuses_arrays_it_cannot_read_as_rgb(image, message):
    with pytest.raises(BlackboxCamError, match=message):
        bc.explain(EFFNET, image, "gradcam")


def test_explain_checks_options_before_loading_the_model(tmp_path):
    with pytest.raises(BlackboxCamError, match="window is not an option of decam"):
        bc.explain(tmp_path / "missing.onnx", CAT, "decam", window=8)
    with pytest.raises(BlackboxCamError, match="model options load a model"):
        bc.explain(bc.load_model(EFFNET), CAT, "gradcam", resize="crop")
    assert bc.load_model(EFFNET) is bc.load_model(EFFNET)          # loaded once, reused


# -- Result ---------------------------------------------------------------------------------------


def test_result_overlay_picture_and_repr(cat):
    assert cat.overlay().size == (451, 300)
    pic = decode(cat._repr_png_())
    assert pic.width == 451 + 16 and pic.height > 300 + 20           # the overlay, its caption under it
    np.testing.assert_array_equal(np.asarray(pic)[4:304, 8:459], np.asarray(cat.overlay()))
    assert repr(cat) == "<Result chelsea.png: Egyptian cat (0.788), gradcam, 1 query, map 451x300>"
    small = bc.explain(HANS / "clever_hans.onnx", HANS / "images" / "field_0_square.png", "gradcam")
    assert small.overlay().size == (64, 64) and decode(small._repr_png_()).width == 256 + 16  # enlarged x4


def test_result_plot_has_a_colour_bar_and_the_caption(cat):
    ax = cat.plot()
    fig = ax.figure
    assert len(fig.axes) == 2                                       # the image and its colour bar
    assert "Egyptian cat (0.788)" in ax.get_title() and "gradcam, 1 query" in ax.get_title()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    w, h = decode(buf.getvalue()).size
    assert abs(w - fig.get_figwidth() * 50) <= 1 and abs(h - fig.get_figheight() * 50) <= 1
    cat.show()                                                      # Agg: draws, shows nothing, no error
    fig, axes = plt.subplots(1, 2)
    assert cat.plot(axes[1], colorbar=False) is axes[1] and len(fig.axes) == 2


def test_result_save_writes_what_the_cli_writes(tmp_path, cat):
    r = run("explain", EFFNET, CAT, "-m", "gradcam", "--out", tmp_path / "cli")
    assert r.exit_code == 0, r.output
    record = cat.save(tmp_path / "api")
    for name in ("chelsea_gradcam.npy", "chelsea_gradcam.png"):
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    cli = json.loads((tmp_path / "cli" / "explain.json").read_text())[0]
    api = json.loads((tmp_path / "api" / "explain.json").read_text())[0]
    assert api == record | {} and list(api) == list(cli)
    assert {k: v for k, v in api.items() if k != "seconds"} == {k: v for k, v in cli.items() if k != "seconds"}
    anonymous = bc.explain(EFFNET, np.zeros((8, 8, 3), np.uint8), "gradcam")
    with pytest.raises(BlackboxCamError, match="has no file name"):
        anonymous.save(tmp_path / "anon")
    assert anonymous.save(tmp_path / "anon", name="black.png")["npy"] == "black_gradcam.npy"


def test_plot_methods_shares_one_target_and_draws_each_method(cat):
    results = bc.plot_methods(EFFNET, CAT, ["rise", "gradcam"], budget=40, target="tabby, tabby cat")
    assert [r.method for r in results] == ["rise", "gradcam"]
    assert {r.label for r in results} == {"tabby, tabby cat"}
    np.testing.assert_array_equal(results[0].saliency,
                                  bc.explain(EFFNET, CAT, "rise", budget=40, target="tabby, tabby cat").saliency)
    fig = plt.gcf()
    assert len(fig.axes) == 4                                       # the image, two overlays, one colour bar
    assert [a.get_title().split("\n")[0] for a in fig.axes[:3]] == ["chelsea.png", "rise", "gradcam"]
    with pytest.raises(BlackboxCamError, match="needs 3 axes"):
        bc.plot_methods(EFFNET, CAT, ["rise", "gradcam"], budget=40, axes=[plt.gca()])


# -- job results ------------------------------------------------------------------------------------


def test_compare_result_shows_its_panels(tmp_path):
    from blackbox_cam.jobs.compare import MetricSettings, compare_images
    from blackbox_cam.jobs.compare.panels import make_panel
    from blackbox_cam.pictures.display import Shows

    clf = bc.load_model(HANS / "clean.onnx")                        # 64 x 64: the metrics are quick
    res = compare_images(clf, [HANS / "images" / "field_0_square.png", HANS / "images" / "field_1_cross.png"],
                         ["rise", "gradcam"], budget=40, settings=MetricSettings(road=False))
    assert isinstance(res, Shows)
    panels = [make_panel(ir, res) for ir in res.images]
    pic = decode(res.png())
    assert pic.width == max(p.width for p in panels) and pic.height == sum(p.height for p in panels) + 8
    assert decode(res._repr_png_()).size == display_size(pic).size and max(display_size(pic).size) <= MAX_SIDE
    assert res.describe().startswith("compare: 2 images; means: rise deletion ")
    ax = res.plot()
    assert ax.get_title() == res.describe()
    res.show()                                                      # the generic Shows.show: no error on Agg


def test_gate_report_shows_failing_overlays_and_a_passing_one_its_verdict():
    from blackbox_cam.jobs.gate import run_gate
    from blackbox_cam.testing import as_regions

    forbid = as_regions(HANS / "timestamp_mask.png")
    images = sorted((HANS / "images").glob("*.png"))[:3]
    failed = run_gate(bc.load_model(HANS / "clever_hans.onnx"), images, ["gradcam"], forbid=forbid)
    assert not failed.passed and all(c.picture is not None and c.picture.size[0] == 256 + 16 for c in failed.cases)
    pic = decode(failed.png())
    assert pic.width == 3 * (256 + 16) + 4 * 8 and pic.height > 256 + 40  # three captioned overlays, the verdict
    assert decode(failed._repr_png_()).size == display_size(pic).size == (800, round(pic.height * 800 / pic.width))
    assert repr(failed).startswith("<GateReport gate FAILED: clever_hans.onnx gradcam: 3/3")
    passed = run_gate(bc.load_model(HANS / "clean.onnx"), images, ["gradcam"], forbid=forbid)
    assert passed.passed and passed._repr_png_() is None and passed.picture() is None

    class Printer:
        def text(self, t):
            self.out = t
    p = Printer()
    passed._repr_pretty_(p, False)
    assert p.out.startswith("gate passed: clean.onnx gradcam: 0/3")
    with pytest.raises(ValueError, match="has no picture: gate passed"):
        passed.png()
    assert run_gate(bc.load_model(HANS / "clever_hans.onnx"), images, ["gradcam"], forbid=forbid,
                    pictures=1).picture().width == 256 + 16 + 2 * 8             # keeps only the first


def test_global_result_shows_its_contact_sheet(tmp_path, monkeypatch):
    from blackbox_cam.jobs.global_ import run_global

    def no_switch(*a, **k):
        raise AssertionError("matplotlib.use() would turn off a notebook's inline plots")
    monkeypatch.setattr(matplotlib, "use", no_switch)
    res = run_global(bc.load_model(MODELS / "stamped" / "stamped.onnx"), [MODELS / "stamped" / "demo"],
                     tmp_path, method="gradcam", steps=11)
    sheet = Image.open(tmp_path / "global_sheet.png")
    assert res.picture().size == sheet.size and decode(res._repr_png_()).size == display_size(sheet).size
    assert res.peppr_picture().size == Image.open(tmp_path / "peppr.png").size
    assert res.describe().startswith("global gradcam: 48 images; ")


def test_animation_shows_its_contact_sheet_and_plays_its_gif(tmp_path, monkeypatch):
    from blackbox_cam.jobs.animate import animate, write_animation

    monkeypatch.setattr(matplotlib, "use", lambda *a, **k: (_ for _ in ()).throw(AssertionError("use()")))
    image = bc.load_image(HANS / "images" / "field_0_square.png")
    anim = animate(bc.load_model(HANS / "clever_hans.onnx"), image, "gradcam", road=True)
    written = write_animation(anim, tmp_path, "f0", norm="layer")
    sheet = Image.open(written["layer_sheet"])
    assert decode(anim.png()).size == sheet.size
    gif = anim.gif()
    assert gif.data == written["layer_gif"].read_bytes()
    with Image.open(io.BytesIO(gif.data)) as g:
        assert g.format == "GIF" and g.n_frames == len(anim.frames)
    assert gif._repr_html_().startswith('<img src="data:image/gif;base64,')
    gif.save(tmp_path / "again.gif")
    assert (tmp_path / "again.gif").read_bytes() == gif.data
    assert f"{len(anim.frames)} frames" in repr(anim)


def test_compare_save_maps_writes_what_explain_writes(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = run("compare", HANS / "clean.onnx", HANS / "images", "-m", "rise,gradcam", "--budget", "40", "--no-road",
                "--save-maps", "--out", tmp_path / "cmp")
    assert r.exit_code == 0, r.output
    e = run("explain", HANS / "clean.onnx", HANS / "images", "-m", "rise,gradcam", "--budget", "40",
            "--out", tmp_path / "exp")
    assert e.exit_code == 0, e.output
    saved = tmp_path / "cmp" / "explain"
    names = sorted(p.name for p in (tmp_path / "exp").glob("*_*.*"))
    # 8 images x (gradcam: npy, png; rise: npy, png and the standard errors _se.npy)
    assert len(names) == 8 * (2 + 3) and names == sorted(p.name for p in saved.glob("*_*.*"))
    for name in names:
        assert (saved / name).read_bytes() == (tmp_path / "exp" / name).read_bytes(), name
    a = json.loads((saved / "explain.json").read_text())
    b = json.loads((tmp_path / "exp" / "explain.json").read_text())
    drop = ("seconds", "cached")
    assert [{k: v for k, v in x.items() if k not in drop} for x in a] == \
           [{k: v for k, v in x.items() if k not in drop} for x in b]
