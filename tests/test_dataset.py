"""Dataset inputs (files, folders, manifests), ground truth and the per-image map cache."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam import BlackboxCamError, Classifier
from blackbox_cam.cli import main
from blackbox_cam.jobs.dataset import MapCache, expand_inputs, explain_cached, read_ground_truth, read_manifest, resolve_label


@pytest.fixture()
def folder(tmp_path, heldout):
    """imgs/ with two good images (one in a sub-folder), a text file, a corrupt PNG and a hidden file."""
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(heldout["images"][0]).save(d / "b.png")
    Image.fromarray(heldout["images"][1]).save(d / "sub" / "a.png")
    (d / "notes.txt").write_text("not an image")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (d / ".DS_Store").write_bytes(b"\0")
    return d


def test_folder_is_recursive_sorted_and_keeps_bad_files_as_failing_items(folder):
    items = expand_inputs([folder])
    assert [it.name for it in items] == ["b.png", "corrupt.png", "notes.txt", "sub/a.png"]
    assert items[3].stem() == "sub__a"
    assert items[0].load().shape == (64, 64, 3)
    assert items[2].skip and not any(it.skip for i, it in enumerate(items) if i != 2)
    with pytest.raises(BlackboxCamError, match="notes.txt: skipped, not an image file"):
        items[2].load()
    with pytest.raises(BlackboxCamError, match="corrupt.png: not a readable image"):
        items[1].load()
    assert expand_inputs([folder]) == items  # deterministic


def test_same_file_twice_is_kept_once_and_equal_names_are_made_unique(folder, tmp_path, heldout):
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(heldout["images"][2]).save(other / "b.png")
    items = expand_inputs([folder / "b.png", folder, other / "b.png"])
    names = [it.name for it in items]
    assert names[0] == "b.png" and names.count("b.png") == 1 and "b-2.png" in names
    assert len(items) == 5


def test_manifest_paths_are_relative_to_the_csv_and_labels_are_kept(folder):
    m = folder / "list.csv"
    m.write_text("image,label\nsub/a.png,cross\nb.png,0\nmissing.png,1\n")
    items = expand_inputs([m])
    assert [(it.name, it.label) for it in items] == [("sub/a.png", "cross"), ("b.png", "0"), ("missing.png", "1")]
    assert items[0].path == folder / "sub" / "a.png"
    with pytest.raises(BlackboxCamError, match="missing.png: no such file"):
        items[2].load()


@pytest.mark.parametrize("text, message", [
    ("path,label\na.png,0\n", "lacks image"),
    ("image\n", "lists no images"),
    ("image,label\n,0\n", "line 2: empty image cell"),
])
def test_bad_manifest_is_one_clear_error(tmp_path, text, message):
    m = tmp_path / "m.csv"
    m.write_text(text)
    with pytest.raises(BlackboxCamError, match=message):
        read_manifest(m)


def test_ground_truth_by_index_or_name_checked_against_the_model(folder, planted):
    gt_csv = folder / "gt.csv"
    gt_csv.write_text("image,label\nb.png,ring\nsub/a.png,1\n")
    gt = read_ground_truth(gt_csv, planted.labels, planted.num_classes)
    items = {it.name: it for it in expand_inputs([folder])}
    assert gt.get(items["b.png"]) == 2 and gt.get(items["sub/a.png"]) == 1
    assert gt.get(items["notes.txt"]) is None
    gt_csv.write_text("image,label\nb.png,hexagon\n")
    with pytest.raises(BlackboxCamError, match=r"gt.csv, line 2: label 'hexagon' is not one of the model's labels"):
        read_ground_truth(gt_csv, planted.labels, planted.num_classes)
    gt_csv.write_text("image,label\nb.png,7\n")
    with pytest.raises(BlackboxCamError, match="label 7 is out of range: the model has 4 classes"):
        read_ground_truth(gt_csv, planted.labels, planted.num_classes)
    gt_csv.write_text("image,class\nb.png,1\n")
    with pytest.raises(BlackboxCamError, match="lacks label"):
        read_ground_truth(gt_csv, planted.labels, planted.num_classes)
    assert resolve_label("CROSS", planted.labels, 4) == 1


def test_cache_key_separates_every_setting(tmp_path, planted):
    cache = MapCache(tmp_path, planted)
    base = dict(target=None, budget=100, seed=0, options={"grid": 8})
    k = cache.key("d1", "rise", **base)
    assert k == cache.key("d1", "rise", **{**base, "target": "top1"})
    others = [cache.key("d2", "rise", **base), cache.key("d1", "decam", **base),
              cache.key("d1", "rise", **{**base, "seed": 1}), cache.key("d1", "rise", **{**base, "budget": 101}),
              cache.key("d1", "rise", **{**base, "target": 2}), cache.key("d1", "rise", **{**base, "options": {}})]
    assert len({k, *others}) == 7


def test_cache_key_includes_the_model_file_and_its_preprocessing(tmp_path, planted_path):
    import shutil
    a = Classifier(planted_path, device="cpu")
    b = Classifier(planted_path, device="cpu", preprocess="imagenet")
    other = tmp_path / "p.onnx"
    shutil.copy(planted_path.parent / "planted_softmax.onnx", other)
    c = Classifier(other, device="cpu")
    keys = {MapCache(tmp_path / "o", m).key("d", "rise", target=None, budget=None, seed=0) for m in (a, b, c)}
    assert len(keys) == 3


def test_cached_map_is_reused_without_queries_and_is_identical(tmp_path, planted, heldout, folder):
    item = expand_inputs([folder / "b.png"])[0]
    image = item.load()
    cache = MapCache(tmp_path, planted)
    first, hit = explain_cached(planted, image, "rise", cache=cache, digest=item.digest(), budget=40, seed=3)
    assert not hit and cache.misses == 1
    q = planted.queries
    again, hit = explain_cached(planted, image, "rise", cache=MapCache(tmp_path, planted), digest=item.digest(),
                                budget=40, seed=3)
    assert hit and planted.queries == q
    np.testing.assert_array_equal(again.saliency, first.saliency)
    np.testing.assert_array_equal(again.explanation.saliency, first.explanation.saliency)
    assert (again.target, again.predicted, again.score) == (first.target, first.predicted, first.score)
    _, hit = explain_cached(planted, image, "rise", cache=cache, digest=item.digest(), budget=40, seed=4)
    assert not hit


def test_damaged_cache_entry_is_recomputed(tmp_path, planted, folder):
    item = expand_inputs([folder / "b.png"])[0]
    cache = MapCache(tmp_path, planted)
    res, _ = explain_cached(planted, item.load(), "rise", cache=cache, digest=item.digest(), budget=30)
    [entry] = list((tmp_path / "maps").glob("*.npz"))
    entry.write_bytes(b"truncated")
    again, hit = explain_cached(planted, item.load(), "rise", cache=cache, digest=item.digest(), budget=30)
    assert not hit
    np.testing.assert_array_equal(again.saliency, res.saliency)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_explain_on_a_folder_records_bad_files_and_goes_on_then_resumes_from_the_cache(tmp_path, planted_path,
                                                                                       folder):
    out = tmp_path / "out"
    r = run("explain", planted_path, folder, "-m", "rise", "--budget", "30", "--out", out)
    assert r.exit_code == 1, r.output  # the corrupt image fails; the text file is only skipped
    # issue 29: the stray file is one note line (listed first in explain.json), never an error
    assert "note: skipped 1 non-image file(s): notes.txt" in r.output and "corrupt.png: not a readable image" in r.output
    assert "Traceback" not in r.output
    recs = json.loads((out / "explain.json").read_text())
    assert [("error" in rec, "skipped" in rec) for rec in recs] == [(False, True), (False, False), (True, False),
                                                                    (False, False)]
    assert (out / "b_rise.npy").exists() and (out / "sub__a_rise.npy").exists()
    first = {p.name: np.load(p) for p in out.glob("*.npy")}
    assert len(list((out / "maps").glob("*.npz"))) == 2

    r = run("explain", planted_path, folder, "-m", "rise", "--budget", "30", "--out", out)
    assert r.exit_code == 1
    recs = json.loads((out / "explain.json").read_text())
    assert [rec.get("cached") for rec in recs if "npy" in rec] == [True, True]
    for name, arr in first.items():
        np.testing.assert_array_equal(np.load(out / name), arr)


def test_a_folder_with_only_a_stray_file_besides_images_exits_0(tmp_path, planted_path, folder):
    (folder / "corrupt.png").unlink()
    r = run("explain", planted_path, folder, "-m", "rise", "--budget", "20", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert "note: skipped 1 non-image file(s): notes.txt" in r.output


def test_compare_accepts_a_folder_and_skips_bad_files(tmp_path, planted_path, folder):
    out = tmp_path / "cmp"
    r = run("compare", planted_path, folder, "-m", "rise,occlusion", "--budget", "30", "--no-road", "--out", out)
    assert r.exit_code == 1, r.output
    data = json.loads((out / "compare.json").read_text())
    assert {f["image"] for f in data["failures"]} == {"corrupt.png"}
    assert [s["image"] for s in data["skipped"]] == ["notes.txt"]
    assert {row["image"] for row in data["rows"]} == {"b.png", "sub/a.png"}
