"""The evidence gate (issue 12): rule, regions, JUnit, CLI exit codes, the Clever-Hans demo."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam.cli import main
from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.jobs.gate.job import GateCase, GateRule, ImageCheck, check_map, evidence_share, method_verdict, peak_in
from blackbox_cam.jobs.gate.regions import check_regions, parse_region, union

from conftest import MODELS, require

DEMO = MODELS / "clever_hans"
MASK = DEMO / "timestamp_mask.png"
BOX = "36,52,64,64"  # the same region as MASK, as a box


@pytest.fixture(scope="module")
def demo_images():
    files = sorted((DEMO / "images").glob("field_*.png"))
    assert len(files) == 8, files
    return files


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --------------------------------------------------------------------------- the rule on hand-made maps


def test_share_is_positive_mass_inside_over_total():
    s = np.zeros((8, 8), np.float32)
    s[0:2, 0:2] = 1.0      # 4 inside the box
    s[5, 5] = 2.0          # 2 outside
    s[7, 7] = -3.0         # negative evidence does not count
    box = parse_region("0,0,2,2").raster((8, 8))
    assert evidence_share(s, box) == pytest.approx(4 / 6)
    assert evidence_share(np.zeros((8, 8)), box) is None


def test_peak_inside_forbidden_fails_even_with_a_small_share():
    s = np.full((10, 10), 0.5, np.float32)
    s[0, 0] = 1.0
    region = parse_region("0,0,1,1").raster((10, 10))
    chk = check_map(s, region, None, GateRule())
    assert chk.share_forbidden < 0.05 and chk.peak_in_forbidden and not chk.passed
    assert peak_in(s, region) and not peak_in(s, ~region)


def test_max_share_boundary_is_inclusive():
    s = np.ones((4, 4), np.float32)
    s[0, 0] = 0.0                       # so the maximum (a tie) is not only inside
    region = np.zeros((4, 4), bool)
    region[1, 0:2] = True               # share = 2 / 15
    share = evidence_share(s, region)
    assert check_map(s, region, None, GateRule(max_share=share)).reasons == ("the map's maximum lies in the forbidden region",)
    s[1, 0:2] = 0.9                     # no longer a maximum: only the share decides
    share = evidence_share(s, region)
    assert check_map(s, region, None, GateRule(max_share=share)).passed
    below = float(np.nextafter(share, 0.0))
    assert not check_map(s, region, None, GateRule(max_share=below)).passed


def test_min_share_boundary_is_inclusive():
    s = np.zeros((4, 4), np.float32)
    s[0, 0], s[3, 3] = 1.0, 3.0
    req = np.zeros((4, 4), bool)
    req[3, 3] = True                    # share inside = 0.75 exactly
    assert check_map(s, None, req, GateRule(min_share=0.75)).passed
    chk = check_map(s, None, req, GateRule(min_share=float(np.nextafter(0.75, 1.0))))
    assert chk.reasons == ("required share 0.750 < min-share 0.75",)


def test_fail_rate_boundary_is_inclusive():
    ok = ImageCheck(0.0, False, None, 0.1, None)
    bad = ImageCheck(0.9, True, None, 0.1, None, ("x",))
    cases = [GateCase(f"{i}.png", "gradcam", check=bad if i == 0 else ok) for i in range(4)]
    assert method_verdict("gradcam", cases, GateRule(max_fail_rate=0.25)).passed
    assert not method_verdict("gradcam", cases, GateRule(max_fail_rate=0.2499)).passed
    assert not method_verdict("gradcam", cases, GateRule()).passed
    errored = cases[1:] + [GateCase("e.png", "gradcam", error="unreadable")]
    assert not method_verdict("gradcam", errored, GateRule(max_fail_rate=1.0)).passed  # unchecked never passes


def test_empty_map_fails():
    chk = check_map(np.zeros((5, 5), np.float32), parse_region("0,0,1,1").raster((5, 5)), None)
    assert not chk.passed and chk.share_forbidden is None


# --------------------------------------------------------------------------- regions


def test_mask_and_box_give_the_same_region(tmp_path):
    box = parse_region(BOX)
    mask = parse_region(require(MASK))
    assert box.kind == "box" and mask.kind == "mask"
    np.testing.assert_array_equal(box.raster((64, 64)), mask.raster((64, 64)))
    big = np.zeros((128, 128), np.uint8)          # the same mask drawn at twice the resolution
    big[104:128, 72:128] = 255
    Image.fromarray(big).save(tmp_path / "big.png")
    np.testing.assert_array_equal(parse_region(str(tmp_path / "big.png")).raster((64, 64)), box.raster((64, 64)))


def test_several_regions_are_united():
    u = union([parse_region("0,0,2,2"), parse_region("3,3,4,4")], (5, 5))
    assert u.sum() == 5 and u[0, 0] and u[3, 3] and not u[2, 2]
    assert union([], (5, 5)) is None


@pytest.mark.parametrize("spec, message", [
    ("missing_mask.png", "no such region file"),
    ("1,2,3", "is not x0,y0,x1,y1"),
    ("1.5,2,3,4", "four whole numbers"),
    ("10,10,5,20", "is empty"),
    ("-1,0,5,5", "lies outside the image"),
])
def test_bad_region_specs_are_rejected(tmp_path, monkeypatch, spec, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BlackboxCamError, match=message):
        parse_region(spec)


def test_unreadable_and_all_black_masks_are_rejected(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(BlackboxCamError, match="not a readable mask image"):
        parse_region(str(tmp_path / "junk.png"))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(BlackboxCamError, match="all black"):
        parse_region(str(tmp_path / "black.png"))


def test_box_outside_an_image_names_the_image():
    with pytest.raises(BlackboxCamError, match=r"small\.png: box 40,56,70,63 lies outside the 64x64 image"):
        check_regions([parse_region("40,56,70,63")], (64, 64), "small.png")


@pytest.mark.parametrize("kw", [{"max_share": 1.5}, {"min_share": -0.1}, {"max_fail_rate": float("nan")}])
def test_thresholds_outside_unit_interval_are_rejected(kw):
    with pytest.raises(BlackboxCamError, match="outside \\[0, 1\\]"):
        GateRule(**kw)


# --------------------------------------------------------------------------- the CLI on the Clever-Hans demo


def _gate(model, images, out, *extra):
    return run("gate", require(DEMO / model), *images, "--forbid", MASK, "-m", "gradcam", "--out", out, *extra)


def test_gate_fails_on_clever_hans_and_passes_on_clean_model(tmp_path, demo_images):
    r = _gate("clever_hans.onnx", demo_images, tmp_path / "hans", "--junit", tmp_path / "hans.xml")
    assert r.exit_code == 1, r.output
    # stdout is the one verdict line (a CI log greps it); the run's summary line goes to stderr
    assert r.stdout.startswith("gate FAILED: clever_hans.onnx gradcam:") and r.stdout.count("\n") == 1
    rep = json.loads((tmp_path / "hans" / "gate.json").read_text())
    assert rep["passed"] is False
    failing = [c for c in rep["images"] if not c["passed"]]
    assert len(failing) >= len(demo_images) // 2
    for c in failing:   # each failing image has its overlay, with the forbidden box outlined in magenta
        assert c["share_forbidden"] > 0.3 or c["peak_in_forbidden"]
        pic = np.asarray(Image.open(tmp_path / "hans" / c["overlay"]).convert("RGB"))
        assert ((pic == (255, 0, 255)).all(axis=2)).sum() > 100

    r = _gate("clean.onnx", demo_images, tmp_path / "clean", "--junit", tmp_path / "clean.xml")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("gate passed: clean.onnx gradcam: 0/8 images failed")
    rep = json.loads((tmp_path / "clean" / "gate.json").read_text())
    assert rep["passed"] and all(c["share_forbidden"] <= 0.3 and not c["peak_in_forbidden"] for c in rep["images"])
    assert not (tmp_path / "clean" / "overlays").exists()


def test_junit_parses_and_counts_match(tmp_path, demo_images):
    _gate("clever_hans.onnx", demo_images, tmp_path / "out", "--junit", tmp_path / "r" / "gate.xml")
    rep = json.loads((tmp_path / "out" / "gate.json").read_text())
    root = ET.parse(tmp_path / "r" / "gate.xml").getroot()
    suites = root.findall("testsuite")
    assert root.tag == "testsuites" and [s.get("name") for s in suites] == ["gate.gradcam"]
    cases = suites[0].findall("testcase")
    n_fail = sum(not c["passed"] for c in rep["images"])
    assert [c.get("name") for c in cases] == [str(p) for p in demo_images]
    assert suites[0].get("tests") == root.get("tests") == str(len(demo_images))
    assert suites[0].get("failures") == root.get("failures") == str(n_fail) == str(len(suites[0].findall("testcase/failure")))
    assert suites[0].get("errors") == "0" and suites[0].get("skipped") == "0"
    for case, rec in zip(cases, rep["images"]):
        fail = case.find("failure")
        assert (fail is None) == rec["passed"]
        if fail is not None:
            assert f"{rec['share_forbidden']:.3f}" in fail.get("message") and "max-share 0.3" in fail.get("message")


def test_tolerated_failures_are_skipped_and_the_gate_passes(tmp_path, demo_images):
    r = _gate("clever_hans.onnx", demo_images, tmp_path / "out", "--junit", tmp_path / "g.xml", "--max-fail-rate", 1)
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "gate.json").read_text())
    root = ET.parse(tmp_path / "g.xml").getroot()
    n_fail = sum(not c["passed"] for c in rep["images"])
    assert n_fail > 0 and root.get("failures") == "0" and root.get("skipped") == str(n_fail)
    assert all("tolerated" in s.get("message") for s in root.iter("skipped"))


def test_mask_and_box_give_the_same_gate_result(tmp_path, demo_images):
    a = _gate("clever_hans.onnx", demo_images, tmp_path / "mask")
    b = run("gate", DEMO / "clever_hans.onnx", *demo_images, "--forbid", BOX, "-m", "gradcam", "--out", tmp_path / "box")
    assert a.exit_code == b.exit_code == 1
    ra, rb = (json.loads((tmp_path / d / "gate.json").read_text())["images"] for d in ("mask", "box"))
    assert [(c["share_forbidden"], c["peak_in_forbidden"], c["passed"]) for c in ra] == \
           [(c["share_forbidden"], c["peak_in_forbidden"], c["passed"]) for c in rb]


def test_max_share_boundary_on_a_real_map(tmp_path, demo_images):
    """--max-share equal to an image's measured share passes it; the next float below fails it."""
    img = demo_images[1]
    _gate("clean.onnx", [img], tmp_path / "a")
    share = json.loads((tmp_path / "a" / "gate.json").read_text())["images"][0]["share_forbidden"]
    assert 0 < share < 0.3
    assert _gate("clean.onnx", [img], tmp_path / "b", "--max-share", repr(share)).exit_code == 0
    r = _gate("clean.onnx", [img], tmp_path / "c", "--max-share", repr(float(np.nextafter(share, 0))))
    assert r.exit_code == 1 and "1/1 images failed" in r.output


def test_require_region_checks_min_share(tmp_path, demo_images):
    img = demo_images[0]   # requiring the evidence on the overlay: the clean model looks elsewhere
    r = run("gate", DEMO / "clean.onnx", img, "--require", BOX, "-m", "gradcam", "--out", tmp_path / "o")
    assert r.exit_code == 1
    rec = json.loads((tmp_path / "o" / "gate.json").read_text())["images"][0]
    assert rec["share_required"] < 0.5 and "min-share 0.5" in rec["reasons"][-1]


def test_unreadable_image_is_an_error_case_and_exit_1(tmp_path, demo_images):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    r = _gate("clean.onnx", [demo_images[0], bad], tmp_path / "o", "--junit", tmp_path / "g.xml")
    assert r.exit_code == 1 and "broken.png: not a readable image" in r.output and "Traceback" not in r.output
    root = ET.parse(tmp_path / "g.xml").getroot()
    assert root.get("errors") == "1" and root.get("failures") == "0" and len(root.findall(".//error")) == 1


def _black_mask(tmp_path):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "black.png")
    return tmp_path / "black.png"


def _junk(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"junk")
    return tmp_path / "junk.png"


@pytest.mark.parametrize("make_args, message", [
    (lambda t: ["--forbid", t / "nope.png"], "nope.png: no such region file"),
    (lambda t: ["--forbid", _junk(t)], "junk.png: not a readable mask image"),
    (lambda t: ["--forbid", _black_mask(t)], "black.png: the mask is all black"),
    (lambda t: ["--forbid", "36,52,65,64"], "box 36,52,65,64 lies outside the 64x64 image"),
    (lambda t: ["--forbid", BOX, "--max-share", "1.5"], "--max-share 1.5 is outside [0, 1]"),
    (lambda t: ["--forbid", BOX, "--min-share", "-0.2"], "--min-share -0.2 is outside [0, 1]"),
    (lambda t: ["--forbid", BOX, "--max-fail-rate", "2"], "--max-fail-rate 2.0 is outside [0, 1]"),
    (lambda t: [], "no region given"),
])
def test_bad_input_is_one_line_exit_2_and_no_junit(tmp_path, demo_images, make_args, message):
    junit = tmp_path / "reports" / "gate.xml"
    r = run("gate", DEMO / "clean.onnx", demo_images[0], *make_args(tmp_path), "-m", "gradcam",
            "--out", tmp_path / "out", "--junit", junit)
    assert r.exit_code == 2, r.output
    assert r.output.strip().count("\n") == 0 and r.output.startswith("error: ") and message in r.output
    assert not junit.exists() and not (tmp_path / "out").exists()


def test_exit_codes(tmp_path, demo_images):
    assert _gate("clean.onnx", demo_images[:2], tmp_path / "a").exit_code == 0
    assert _gate("clever_hans.onnx", demo_images, tmp_path / "b").exit_code == 1
    assert _gate("clean.onnx", demo_images[:1], tmp_path / "c", "-m", "nomethod").exit_code == 2


def test_decam_gate_fails_on_clever_hans_and_passes_on_clean_model(tmp_path, demo_images):
    """The black-box path: DE-CAM at a small budget reaches the same verdicts."""
    imgs = demo_images
    hans = run("gate", DEMO / "clever_hans.onnx", *imgs, "--forbid", MASK, "--budget", "300", "--out", tmp_path / "h")
    clean = run("gate", DEMO / "clean.onnx", *imgs, "--forbid", MASK, "--budget", "300", "--out", tmp_path / "c")
    assert hans.exit_code == 1 and "gate FAILED: clever_hans.onnx decam" in hans.output, hans.output
    assert clean.exit_code == 0 and "gate passed: clean.onnx decam" in clean.output, clean.output


def test_assert_evidence_in_a_users_test(demo_images):
    from blackbox_cam.testing import assert_evidence

    report = assert_evidence(DEMO / "clean.onnx", demo_images, forbid=MASK, method="gradcam", device="cpu")
    assert report.passed and len(report.cases) == len(demo_images)
    assert_evidence(DEMO / "clean.onnx", demo_images[:2], forbid=(36, 52, 64, 64), method="gradcam")
    with pytest.raises(AssertionError, match=r"gate FAILED: clever_hans.onnx(.|\n)*forbidden share"):
        assert_evidence(DEMO / "clever_hans.onnx", demo_images, forbid=BOX, method="gradcam")
    with pytest.raises(BlackboxCamError, match="max-share"):
        assert_evidence(DEMO / "clean.onnx", demo_images, forbid=BOX, max_share=3)


def test_folder_and_manifest_inputs_and_the_cache_rechecks_only_new_images(tmp_path, demo_images):
    """A nightly run: the second run reuses every map it has, explaining only the new image."""
    (tmp_path / "frames").mkdir()
    for p in demo_images[:3]:
        (tmp_path / "frames" / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    r = run("gate", DEMO / "clean.onnx", tmp_path / "frames", "--forbid", MASK, "-m", "gradcam", "--out", out)
    assert r.exit_code == 0, r.output
    first = json.loads((out / "gate.json").read_text())["images"]
    assert [c["image"] for c in first] == [str(tmp_path / "frames" / p.name) for p in demo_images[:3]]
    assert not any(c["cached"] for c in first)
    manifest = tmp_path / "frames" / "list.csv"
    manifest.write_text("image\n" + "".join(f"{p.name}\n" for p in demo_images[:3]) + f"{demo_images[3]}\n")
    r = run("gate", DEMO / "clean.onnx", manifest, "--forbid", MASK, "-m", "gradcam", "--out", out)
    assert r.exit_code == 0, r.output
    second = json.loads((out / "gate.json").read_text())["images"]
    assert [c["cached"] for c in second] == [True, True, True, False]
    assert [c["share_forbidden"] for c in second[:3]] == [c["share_forbidden"] for c in first]


def test_junit_has_one_suite_per_method_and_totals(tmp_path, demo_images):
    r = run("gate", DEMO / "clever_hans.onnx", *demo_images[:2], "--forbid", BOX, "-m", "gradcam,decam",
            "--budget", "200", "--out", tmp_path / "o", "--junit", tmp_path / "g.xml")
    assert r.exit_code == 1 and "gradcam:" in r.output and "decam:" in r.output
    root = ET.parse(tmp_path / "g.xml").getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["gate.gradcam", "gate.decam"]
    assert root.get("tests") == "4" and all(s.get("tests") == "2" for s in suites)
    assert int(root.get("failures")) == sum(int(s.get("failures")) for s in suites) == len(root.findall(".//failure"))


def test_assert_evidence_takes_arrays_and_mask_arrays(demo_images):
    from blackbox_cam.testing import assert_evidence

    frames = [np.asarray(Image.open(p).convert("RGB"), np.float32) for p in demo_images[:2]]
    mask = np.zeros((64, 64), bool)
    mask[52:, 36:] = True
    report = assert_evidence(DEMO / "clean.onnx", frames, forbid=mask, method="gradcam")
    assert [c.image for c in report.cases] == ["image[0]", "image[1]"]
    with pytest.raises(AssertionError, match=r"image\[0\] \[gradcam, square\]"):
        assert_evidence(DEMO / "clever_hans.onnx", frames, forbid=mask, method="gradcam")


def test_box_on_a_reduced_large_image_is_in_original_pixels(tmp_path, demo_images):
    """Images beyond images.MAX_SIDE are worked on reduced; a box still means original pixels."""
    m = parse_region("8000,0,8192,64").raster((32, 4096), (64, 8192))
    assert m[:, 4000:].all() and not m[:, :4000].any()
    wide = np.zeros((64, 8192, 3), np.uint8)
    wide[:, :64] = np.asarray(Image.open(demo_images[0]).convert("RGB"))
    Image.fromarray(wide).save(tmp_path / "wide.png")
    r = run("gate", DEMO / "clean.onnx", tmp_path / "wide.png", "--forbid", "8000,0,8193,64", "-m", "gradcam",
            "--out", tmp_path / "o")
    assert r.exit_code == 2 and "lies outside the 8192x64 image" in r.output
    r = run("gate", DEMO / "clean.onnx", tmp_path / "wide.png", "--forbid", "8000,0,8192,64", "-m", "gradcam",
            "--out", tmp_path / "o")
    rec = json.loads((tmp_path / "o" / "gate.json").read_text())["images"][0]
    assert rec["forbidden_area"] == pytest.approx(96 / 4096)


@pytest.mark.parametrize("method", sorted(set(__import__("blackbox_cam.methods", fromlist=["METHODS"]).METHODS)
                                           - {"rollout", "attention-grad"}))  # transformers only: test_tokens.py
def test_every_registered_method_fails_clever_hans_and_passes_clean(tmp_path, demo_images, method):
    """Two frames, a small budget: each method, black- or white-box, reaches both verdicts."""
    imgs = demo_images[1:3]
    args = ["--forbid", MASK, "-m", method, "--budget", "200"]
    hans = run("gate", DEMO / "clever_hans.onnx", *imgs, *args, "--out", tmp_path / "h")
    clean = run("gate", DEMO / "clean.onnx", *imgs, *args, "--out", tmp_path / "c")
    assert hans.exit_code == 1 and f"gate FAILED: clever_hans.onnx {method}: 2/2" in hans.output, hans.output
    assert clean.exit_code == 0 and f"gate passed: clean.onnx {method}: 0/2" in clean.output, clean.output
