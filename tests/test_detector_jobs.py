"""compare, gate and global on a detector (issue 27 item 5), on the planted detector's held-out scenes.

The planted detector (models/planted_detector.py) reports tags whose class is decided by a small
coloured cue inside the box, so a faithful map of a detection lies in that detection's box. Budgets
are small (a test checks the plumbing and the per-detection bookkeeping, the README has the numbers).
"""
from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam.cli import main
from blackbox_cam.jobs.gate.detections import grown_box
from blackbox_cam.jobs.global_.detections import box_crop

from conftest import MODELS, require

PLANTED = MODELS / "planted_detector" / "planted_detector.onnx"
HELDOUT = MODELS / "planted_detector" / "heldout.npz"
NECK = "/neck/neck.1/neck.1.2/Mul_output_0"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two held-out scenes with 3 and 4 tags, as PNG files, and their true boxes."""
    held = np.load(require(HELDOUT))
    d = tmp_path_factory.mktemp("scenes")
    out = []
    for i in (6, 7):
        Image.fromarray(held["images"][i]).save(d / f"scene{i}.png")
        out.append((d / f"scene{i}.png", held["boxes"][i][: held["count"][i]]))
    return out


@pytest.fixture(scope="module")
def compared(scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    r = run("compare", require(PLANTED), scenes[0][0], "-m", "occlusion,drise,gradcam", "--budget", 64,
            "--layer", NECK, "--no-road", "--save-maps", "--out", out, "-q")
    assert r.exit_code == 0, r.output
    return out, json.loads((out / "compare.json").read_text())


def test_compare_has_one_row_per_image_detection_method(compared, scenes):
    out, doc = compared
    rows = doc["rows"]
    dets = sorted({r["detection"] for r in rows})
    assert dets == list(range(len(scenes[0][1])))                 # every detection of the scene
    assert len(rows) == 3 * len(dets)                               # x 3 methods
    truth = scenes[0][1]
    for r in rows:
        assert {"detection", "box", "label", "class"} <= set(r)
        assert r["label"] in ("red_tag", "blue_tag")
        # the box is the detector's, in the file's pixels: it matches one of the scene's true tags
        iou = max(_iou(r["box"], t) for t in truth)
        assert iou > 0.5, (r["box"], truth)
        assert 0.0 <= r["deletion_auc"] <= 1.0 and 0.0 <= r["insertion_auc"] <= 1.0
        assert 0.0 <= r["energy_in_box"] <= 1.0
    occ = [r for r in rows if r["method"] == "occlusion"]
    assert all(r["pointing_game"] == 1.0 for r in occ)               # its peak is in its own box
    # insertion on the similarity beats deletion for the faithful occlusion maps
    assert np.mean([r["insertion_auc"] for r in occ]) > np.mean([r["deletion_auc"] for r in occ]) + 0.3
    head = next(csv.reader((out / "compare.csv").open()))
    assert head[:5] == ["image", "detection", "box", "label", "class"]
    assert doc["summary"]["occlusion"]["deletion_auc"]["n"] == len(dets)


def test_compare_report_has_one_panel_per_detection_with_its_box(compared):
    out, doc = compared
    panels = sorted(p.name for p in (out / "panels").glob("*.png"))
    n = len({r["detection"] for r in doc["rows"]})
    assert panels == [f"scene6_det{k}.png" for k in range(n)]
    html = (out / "index.html").read_text()
    assert html.count("<figure>") == n and "D-RISE similarity" in html
    # the box is drawn in green on every tile: pure green pixels on the image and on each map's tile
    a = np.asarray(Image.open(out / "panels" / "scene6_det0.png").convert("RGB")).astype(int)
    green = (a[..., 1] > 200) & (a[..., 0] < 60) & (a[..., 2] < 60)
    cols = np.where(green.any(0))[0]
    assert cols.size and (cols.max() - cols.min()) > a.shape[1] * 0.5   # spans the tiles, not one


def test_compare_save_maps_names_them_as_explain_does(compared):
    out, doc = compared
    n = len({r["detection"] for r in doc["rows"]})
    for m in ("occlusion", "drise", "gradcam"):
        for k in range(n):
            a = np.load(out / "explain" / f"scene6_{m}_det{k}.npy")
            assert a.shape == (128, 128)
    recs = json.loads((out / "explain" / "explain.json").read_text())
    assert {(r["method"], r["detection"]) for r in recs} == {(m, k) for m in ("occlusion", "drise", "gradcam")
                                                            for k in range(n)}


def test_compare_refuses_boxes_on_a_detector(scenes, tmp_path):
    csvf = tmp_path / "b.csv"
    csvf.write_text("image,x0,y0,x1,y1\nscene6.png,0,0,10,10\n")
    r = run("compare", PLANTED, scenes[0][0], "-m", "occlusion", "--boxes", csvf, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "--boxes applies to classifiers" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_grown_box_is_the_box_times_one_plus_margin():
    m = grown_box((10, 20, 30, 60), 0.5, (100, 100))
    rows, cols = np.where(m)
    assert (cols.min(), cols.max() + 1, rows.min(), rows.max() + 1) == (5, 35, 10, 70)
    assert grown_box((0, 0, 10, 10), 1.0, (8, 8)).all()             # clipped to the image


def test_gate_checks_each_detection_in_its_own_box(scenes, tmp_path):
    junit = tmp_path / "gate.xml"
    r = run("gate", PLANTED, scenes[0][0], scenes[1][0], "-m", "occlusion", "--budget", 64, "--box-margin", 0.5,
            "--min-share", 0.2, "--junit", junit, "--out", tmp_path / "g", "-q")
    doc = json.loads((tmp_path / "g" / "gate.json").read_text())
    cases = doc["images"]
    n = len(cases)                                           # one case per (image, detection)
    for path, truth in scenes:                               # every true tag is a case of its image
        mine = [c for c in cases if c["image"].endswith(path.name)]
        assert len({c["detection"] for c in mine}) == len(mine) >= len(truth)
        assert all(max(_iou(c["box"], t) for c in mine) > 0.5 for t in truth)
    assert all(c["required_area"] < 0.5 for c in cases)              # the grown box, not the image
    names = [tc.get("name") for tc in ET.parse(junit).iter("testcase")]
    assert len(names) == n and all("#det" in s for s in names)
    failed = [c for c in cases if not c["passed"]]
    assert r.exit_code == (1 if failed else 0), r.output
    # tightening the rule to the box itself (margin 0) and most of the evidence fails more detections
    r2 = run("gate", PLANTED, scenes[0][0], scenes[1][0], "-m", "occlusion", "--budget", 64, "--box-margin", 0,
             "--min-share", 0.9, "--out", tmp_path / "g2", "-q")
    doc2 = json.loads((tmp_path / "g2" / "gate.json").read_text())
    cases2 = doc2["images"]
    assert r2.exit_code == 1 and sum(not c["passed"] for c in cases2) > len(failed)


def test_gate_forbidden_region_on_a_detector(scenes, tmp_path):
    (path, boxes) = scenes[0]
    x0, y0, x1, y1 = (int(v) for v in boxes[0])       # forbid the first tag: its own maps fail by peak
    r = run("gate", PLANTED, path, "-m", "occlusion", "--budget", 64, "--forbid", f"{x0},{y0},{x1},{y1}",
            "--out", tmp_path / "g", "-q")
    doc = json.loads((tmp_path / "g" / "gate.json").read_text())
    cases = doc["images"]
    inside = [c for c in cases if _iou(c["box"], boxes[0]) > 0.5]
    assert inside and all(c["peak_in_forbidden"] and not c["passed"] for c in inside)
    assert r.exit_code == 1


def test_gate_top_k_evidence_is_the_share_of_the_top_pixels(scenes, tmp_path):
    r = run("gate", PLANTED, scenes[0][0], "-m", "occlusion", "--budget", 64, "--top-k", 10, "--min-share", 0.5,
            "--out", tmp_path / "g", "-q")
    doc = json.loads((tmp_path / "g" / "gate.json").read_text())
    assert "evidence: top 10% pixels" in doc["require"]
    for c in doc["images"]:
        assert 0.0 <= c["share_required"] <= 1.0
        assert (c["share_required"] >= 0.5) == c["passed"]
    assert r.exit_code == (0 if all(c["passed"] for c in doc["images"]) else 1)


@pytest.mark.parametrize("args, line", [
    (["--box-margin", "-1"], "--box-margin -1.0 must be a share >= 0"),
    (["--top-k", "0"], "--top-k 0.0 must be a percentage in (0, 100]"),
    (["--max-share", "2"], "--max-share 2.0 is outside [0, 1]"),
])
def test_gate_bad_detector_rule_is_one_line(scenes, tmp_path, args, line):
    r = run("gate", PLANTED, scenes[0][0], *args, "--out", tmp_path / "g")
    assert r.exit_code == 2 and line in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "g").exists()


def test_box_margin_refused_on_a_classifier(scenes, tmp_path):
    r = run("gate", require(MODELS / "efficientnet_lite0.onnx"), scenes[0][0], "--box-margin", 0.5,
            "--out", tmp_path / "g")
    assert r.exit_code == 2 and "--box-margin applies to detectors" in r.output


def test_box_crop_aligns_the_box_to_the_grid():
    a = np.zeros((100, 100))
    a[20:40, 50:90] = 1.0                                   # exactly the box
    c = box_crop(a, (50, 20, 90, 40), 0.0, 16)
    assert c[2:-2, 2:-2].min() > 0.99                       # the box fills the grid
    c = box_crop(a, (50, 20, 90, 40), 1.0, 16)              # grown by 1: the box is the middle half
    assert c[5:11, 5:11].min() > 0.99 and c[0].max() < 0.01 and c[:, 0].max() < 0.01


def test_global_aggregates_per_detected_label(scenes, tmp_path):
    out = tmp_path / "glob"
    r = run("global", PLANTED, scenes[0][0].parent, "-m", "occlusion", "--budget", 64, "--out", out, "-q")
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "global.json").read_text())
    n = len(doc["images"])                                  # one record per detection
    assert n >= sum(len(b) for _, b in scenes) and all("detection" in i and "box" in i for i in doc["images"])
    labels = doc["labels"]
    assert set(labels) <= {"red_tag", "blue_tag"} and sum(v["n_images"] for v in labels.values()) == n
    assert "grown by 0.5" in doc["settings"]["alignment"]
    for name in labels:
        m = np.load(out / f"global_{name}.npy")
        assert m.shape == (64, 64) and np.isclose(m.sum(), 1.0)
        inner = m[11:53, 11:53].sum()                       # the box is the middle 1/1.5 of the grid
        assert inner > (42 / 64) ** 2, inner                 # more mass in the box than its area share
    assert (out / "global_sheet.png").exists()


def test_global_takes_the_detectors_thresholds(scenes, tmp_path):
    """``global`` selects detections with ``--conf``/``--iou``/``--max-detections`` as every other
    detector command does, and records them; a classifier refuses them in one line."""
    folder = scenes[0][0].parent
    base = run("global", PLANTED, folder, "-m", "occlusion", "--budget", 64, "--out", tmp_path / "a", "-q")
    one = run("global", PLANTED, folder, "-m", "occlusion", "--budget", 64, "--out", tmp_path / "b", "-q",
              "--max-detections", 1, "--conf", 0.3, "--iou", 0.5)
    assert base.exit_code == one.exit_code == 0, one.output
    a, b = (json.loads((tmp_path / d / "global.json").read_text()) for d in "ab")
    assert len(b["images"]) == len({i["image"] for i in b["images"]}) < len(a["images"])   # one detection per image
    assert (b["settings"]["conf"], b["settings"]["iou"], b["settings"]["max_detections"]) == (0.3, 0.5, 1)
    assert a["settings"]["conf"] == 0.25
    r = run("global", MODELS / "efficientnet_lite0.onnx", folder, "--conf", 0.3, "--out", tmp_path / "c")
    assert r.exit_code == 2 and r.output.startswith("error: ") and "apply to detectors" in r.output, r.output
    assert not (tmp_path / "c").exists()


def _iou(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_python_jobs_on_a_detector(scenes, tmp_path):
    """The per-detection jobs from Python, with the defaults the CLI uses."""
    from blackbox_cam.jobs.compare.detections import compare_detections as compare_images
    from blackbox_cam.jobs.gate.detections import run_gate_detections as run_gate
    from blackbox_cam.jobs.global_.detections import run_global_detections as run_global
    from blackbox_cam.model.open import open_model

    det = open_model(PLANTED)
    path, truth = scenes[0]
    res = compare_images(det, [path], ["occlusion"], budget=64, settings=None)
    assert len(res.rows) >= len(truth) and all(r["detection"] is not None for r in res.rows)
    assert len(res.images) == len(res.rows)            # one ImageResult (panel) per detection
    gate = run_gate(det, [path], ["occlusion"], budget=64)
    assert len(gate.cases) == len(res.rows) and all(c.check.required_area is not None for c in gate.cases)
    glob = run_global(det, [path], tmp_path / "g", method="occlusion", budget=64)
    assert glob.settings["task"] == "detector" and len(glob.images) == len(res.rows)
