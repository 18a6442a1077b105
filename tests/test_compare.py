"""``blackbox-cam compare`` end to end on the planted model, and its input checks."""
from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam.cli import main
from blackbox_cam.jobs.compare.job import interval, parse_methods, read_boxes
from blackbox_cam.errors import BlackboxCamError

N_IMAGES = 3


@pytest.fixture(scope="module")
def planted_case(tmp_path_factory, planted_path, heldout):
    """Three held-out images as PNG files plus a boxes CSV (with an extra, ignored column)."""
    d = tmp_path_factory.mktemp("planted")
    paths, lines = [], ["image,x0,y0,x1,y1,label"]
    for i in range(N_IMAGES):
        p = d / f"heldout_{i}.png"
        Image.fromarray(heldout["images"][i]).save(p)
        paths.append(p)
        lines.append(f"{p.name}," + ",".join(str(int(v)) for v in heldout["boxes"][i]) + f",{heldout['labels'][i]}")
    boxes = d / "boxes.csv"
    boxes.write_text("\n".join(lines) + "\n")
    return planted_path, paths, boxes


def run(args):
    return CliRunner().invoke(main, ["compare", *map(str, args)], catch_exceptions=False)


def test_compare_writes_every_file_and_the_report_links_only_existing_files(planted_case, tmp_path):
    model, images, boxes = planted_case
    out = tmp_path / "out"
    r = run([model, *images, "--methods", "decam,gradcam,occlusion", "--budget", "60", "--boxes", boxes,
             "--device", "cpu", "--out", out])
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} >= {"index.html", "compare.json", "compare.csv", "panels"}
    assert len(list((out / "panels").glob("*.png"))) == N_IMAGES
    assert not list(out.rglob("*.tmp"))                                    # atomic writes left nothing behind

    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert len(rows) == N_IMAGES * 3
    for key in ("image", "method", "target", "deletion_auc", "insertion_auc", "road", "spearman_vs_gradcam",
                "iou_vs_gradcam", "queries", "seconds", "pointing_game", "energy_in_box"):
        assert key in rows[0], key
    for row in rows:
        assert 0.0 <= float(row["deletion_auc"]) <= 1.0 and 0.0 <= float(row["insertion_auc"]) <= 1.0
        if row["method"] != "gradcam":
            assert int(row["queries"]) <= 60
    by_image = {}
    for row in rows:                                                       # one target per image
        by_image.setdefault(row["image"], set()).add(row["target"])
    assert all(len(t) == 1 for t in by_image.values())

    doc = json.loads((out / "compare.json").read_text())
    assert doc["settings"]["reference"] == "gradcam" and doc["failures"] == []
    s = doc["summary"]["decam"]["insertion_auc"]
    assert s["n"] == N_IMAGES and s["lo"] <= s["mean"] <= s["hi"]

    page = (out / "index.html").read_text()
    refs = re.findall(r"""(?:src|href)=['"]?([^'" >]+)""", page)
    assert refs and all((out / ref).is_file() for ref in refs), refs
    assert page.index("Summary") < page.index("<img")                      # summary table first
    assert "http" not in page                                              # self-contained


def test_failing_image_is_recorded_and_the_rest_go_on(planted_case, tmp_path):
    model, images, _ = planted_case
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "out"
    r = run([model, broken, images[0], "--methods", "occlusion", "--budget", "20", "--no-road", "--out", out])
    assert r.exit_code == 1
    doc = json.loads((out / "compare.json").read_text())
    assert [f["image"] for f in doc["failures"]] == ["broken.png"]
    assert [row["image"] for row in doc["rows"]] == [images[0].name]
    assert "broken.png" in (out / "index.html").read_text()


def test_unknown_method_lists_the_valid_ones(planted_case, tmp_path):
    model, images, _ = planted_case
    r = run([model, images[0], "--methods", "decam,nosuch", "--out", tmp_path / "o"])
    assert r.exit_code == 2
    assert "'nosuch'" in r.output and "decam" in r.output and "occlusion" in r.output
    with pytest.raises(BlackboxCamError, match="choose from"):
        parse_methods("gradcam,bogus")


def test_bad_target_fails_once_up_front(planted_case, tmp_path):
    model, images, _ = planted_case
    r = run([model, *images[:2], "--methods", "occlusion", "--target", "7", "--out", tmp_path / "o"])
    assert r.exit_code == 2 and "out of range" in r.output
    r = run([model, images[0], "--methods", "occlusion", "--budget", "20", "--no-road", "--target", "ring",
             "--out", tmp_path / "o"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o" / "compare.json").read_text())["rows"][0]["target"] == 2


def test_boxes_file_errors_name_the_file_and_row(tmp_path):
    imgs = [tmp_path / "a.png", tmp_path / "b.png"]
    f = tmp_path / "boxes.csv"
    f.write_text("image,x0,y0,x1,y1\na.png,1,2,10,12\nc.png,1,2,3,4\n")
    with pytest.raises(BlackboxCamError, match=r"boxes.csv, line 3: image 'c.png' is not one of"):
        read_boxes(f, imgs)
    f.write_text("image,x0,y0,x1,y1\na.png,1,2,x,12\n")
    with pytest.raises(BlackboxCamError, match=r"boxes.csv, line 2: x0,y0,x1,y1 must be numbers"):
        read_boxes(f, imgs)
    f.write_text("image,x0,y0,x1,y1\na.png,5,2,3,12\n")
    with pytest.raises(BlackboxCamError, match=r"line 2: box .* is not valid"):
        read_boxes(f, imgs)
    f.write_text("image,x0,y0,x1,y1\na.png,1,2\n")
    with pytest.raises(BlackboxCamError, match=r"line 2: 3 fields but the header has 5"):
        read_boxes(f, imgs)
    f.write_text("name,x0,y0,x1,y1\n")
    with pytest.raises(BlackboxCamError, match=r"line 1: header lacks image"):
        read_boxes(f, imgs)
    f.write_text("x1,image,y1,x0,y0,note\n10,b.png,12,1,2,hello\n")         # any column order
    assert read_boxes(f, imgs) == {"b.png": (1.0, 2.0, 10.0, 12.0)}


def test_box_outside_the_image_fails_that_image_only(planted_case, tmp_path):
    model, images, _ = planted_case
    f = tmp_path / "boxes.csv"
    f.write_text(f"image,x0,y0,x1,y1\n{images[0].name},0,0,500,10\n{images[1].name},1,1,9,9\n")
    out = tmp_path / "out"
    r = run([model, images[0], images[1], "--methods", "occlusion", "--budget", "20", "--no-road",
             "--boxes", f, "--out", out])
    assert r.exit_code == 1
    doc = json.loads((out / "compare.json").read_text())
    assert "outside" in doc["failures"][0]["error"]
    assert doc["rows"][0]["image"] == images[1].name and "pointing_game" in doc["rows"][0]


def test_interval_is_a_student_t_interval():
    s = interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / np.sqrt(3)                           # t(0.975, 2) * sd / sqrt(n)
    assert s["mean"] == 2.0 and s["lo"] == pytest.approx(2 - half) and s["hi"] == pytest.approx(2 + half)
    assert interval([0.5]) == {"mean": 0.5, "lo": None, "hi": None, "n": 1}
    assert interval([0.9, 1.0], bounds=(0.0, 1.0))["hi"] == 1.0                # clipped to the range
    assert interval([]) == {"mean": None, "lo": None, "hi": None, "n": 0}
