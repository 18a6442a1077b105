"""Global maps: streamed aggregation, PEPPR, resumable runs, Ray == serial, the `global` command."""
from __future__ import annotations

import filecmp
import json
import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam import Classifier
from blackbox_cam.cli import main
from blackbox_cam.jobs.dataset import expand_inputs
from blackbox_cam.jobs.global_.job import run_global
from blackbox_cam.jobs.global_.maps import Aggregator, normalise_map
from blackbox_cam.metrics import peppr as pep


# -- aggregation ---------------------------------------------------------------------------------
def test_normalise_map_clips_negatives_sums_to_one_and_keeps_empty_maps_uniform():
    m = normalise_map(np.array([[2.0, -1.0], [1.0, 1.0]]))
    np.testing.assert_allclose(m, [[0.5, 0.0], [0.25, 0.25]])
    np.testing.assert_allclose(normalise_map(np.zeros((2, 3))), np.full((2, 3), 1 / 6))
    np.testing.assert_allclose(normalise_map(np.array([[np.nan, 1.0]])), [[0.0, 1.0]])


def test_aggregation_on_constructed_maps_equals_the_batch_formulas():
    rng = np.random.default_rng(0)
    maps = {0: [rng.random((5, 7)) - 0.2 for _ in range(6)], 3: [rng.random((5, 7)) for _ in range(3)]}
    maps[3].append(np.zeros((5, 7)))
    agg = Aggregator((5, 7))
    order = [(k, m) for k in (3, 0) for m in maps[k]]
    for i in rng.permutation(len(order)):
        agg.add(*order[i])
    assert agg.labels == [0, 3] and agg.count(0) == 6 and agg.count(3) == 4 and agg.empty_maps(3) == 1
    for k, ms in maps.items():
        stack = np.stack([normalise_map(m) for m in ms])
        np.testing.assert_allclose(agg.mean(k), stack.mean(0), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(agg.std(k), stack.std(0), rtol=1e-9, atol=1e-15)
        assert agg.mean(k).sum() == pytest.approx(1.0)
    # the overall map weighs labels equally, not images
    np.testing.assert_allclose(agg.overall(), (agg.mean(0) + agg.mean(3)) / 2)


def test_a_label_whose_maps_all_mark_one_pixel_has_that_pixel_and_no_spread():
    agg = Aggregator((4, 4))
    for v in (1.0, 5.0, 0.1):  # any scale: each map is normalised first
        m = np.zeros((4, 4))
        m[1, 2] = v
        agg.add(2, m)
    assert agg.mean(2)[1, 2] == pytest.approx(1.0) and agg.std(2).max() == pytest.approx(0.0, abs=1e-12)


def test_aggregation_memory_does_not_grow_with_the_number_of_maps():
    agg = Aggregator((64, 64))
    m = np.random.default_rng(0).random((64, 64))
    for _ in range(50):
        agg.add(0, m)
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    for _ in range(2000):
        agg.add(0, m)
    now, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert now - base < 64 * 64 * 8  # less than one map's worth after 2,000 more maps


def test_wrong_map_size_is_refused():
    with pytest.raises(ValueError, match="model input size"):
        Aggregator((4, 4)).add(0, np.zeros((4, 5)))


# -- PEPPR ---------------------------------------------------------------------------------------
def test_peppr_score_is_zero_for_identical_curves_and_counts_both_halves():
    e, r = np.linspace(1, 0, 11), np.linspace(0, 1, 11)
    assert pep.score(e, r, e, r) == 0.0
    flat = np.full(11, 0.5)
    # erasing that kills at once and restoring that recovers at once, against a flat chance curve
    assert pep.score(np.r_[1.0, np.zeros(10)], np.r_[0.0, np.ones(10)], flat, flat) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="at least 11"):
        pep.fractions(10)


def test_curves_erase_the_top_fraction_and_restore_it_from_the_fully_erased_image():
    seen = []

    def prob(batch):
        seen.append(batch.copy())
        return np.tile([[0.5, 0.5]], (len(batch), 1))

    x = np.ones((1, 2, 2), np.float32)
    rank = np.array([[0, 1], [2, 3]])
    pep.curves(prob, x, rank, 0, np.linspace(0, 1, 5), batch_size=100)
    b = seen[0][:, 0].reshape(10, 4)
    np.testing.assert_array_equal(b[:5].sum(1), [4, 3, 2, 1, 0])   # erasing 0, 1, 2, 3, 4 pixels
    np.testing.assert_array_equal(b[5:].sum(1), [0, 1, 2, 3, 4])   # restoring from the erased image
    np.testing.assert_array_equal(b[6], [1, 0, 0, 0])              # the top-ranked pixel comes back first


def test_peppr_is_positive_for_the_true_evidence_region_and_about_zero_for_a_random_map(planted, heldout):
    """The planted model's evidence is the object in heldout.npz's boxes (models/README.md)."""
    fr = pep.fractions(11)
    acc = pep.PepprAccumulator(fr)
    noise = np.random.default_rng(5).random((64, 64))
    for i in range(16):
        x = planted.prepare(heldout["images"][i].astype(np.float32))
        t = int(heldout["labels"][i])
        x0, y0, x1, y1 = heldout["boxes"][i]
        box = np.zeros((64, 64))
        box[y0:y1, x0:x1] = 1.0
        acc.add("box", *pep.curves(planted.probabilities, x, pep.ranking(box, 0), t, fr))
        acc.add("random", *pep.curves(planted.probabilities, x, pep.random_ranking((64, 64), 0), t, fr))
        acc.add("noise", *pep.curves(planted.probabilities, x, pep.ranking(noise, 0), t, fr))
    assert acc.result("box")["peppr"] > 0.4
    assert abs(acc.result("noise")["peppr"]) < 0.1


# -- the job -------------------------------------------------------------------------------------
@pytest.fixture()
def dataset(tmp_path, heldout):
    """12 held-out planted images as PNGs + a ground-truth CSV (by class name)."""
    d = tmp_path / "data"
    d.mkdir()
    names = ["square", "cross", "ring", "triangle"]
    rows = ["image,label"]
    for i in range(12):
        Image.fromarray(heldout["images"][i]).save(d / f"h{i:02d}.png")
        rows.append(f"h{i:02d}.png,{names[int(heldout['labels'][i])]}")
    (d / "gt.csv").write_text("\n".join(rows) + "\n")
    return d


def _files(out):
    return sorted(p.name for p in out.iterdir() if p.is_file())


def test_resumed_run_recomputes_nothing_and_writes_identical_files(tmp_path, planted_path, dataset):
    clf = Classifier(planted_path, device="cpu")
    items = [it for it in expand_inputs([dataset]) if not it.skip]
    out = tmp_path / "out"
    first = run_global(clf, items[:8], out, method="gradcam", ground_truth=dataset / "gt.csv", steps=11)
    assert first.computed == 8 and first.curves_computed == 8
    snapshot = tmp_path / "snap"
    snapshot.mkdir()
    for name in _files(out):
        (snapshot / name).write_bytes((out / name).read_bytes())

    q = clf.queries
    again = run_global(clf, items[:8], out, method="gradcam", ground_truth=dataset / "gt.csv", steps=11)
    assert clf.queries == q, "a resumed run must not query the model"
    assert (again.computed, again.reused, again.curves_computed, again.curves_reused) == (0, 8, 0, 8)
    assert _files(out) == _files(snapshot)
    for name in _files(out):
        assert filecmp.cmp(out / name, snapshot / name, shallow=False), name

    # extending the dataset makes only the new maps
    more = run_global(clf, items, out, method="gradcam", ground_truth=dataset / "gt.csv", steps=11)
    assert (more.computed, more.reused) == (4, 8) and len(more.images) == 12
    # other settings never reuse (or overwrite) these maps
    other = run_global(clf, items[:2], out, method="gradcam", seed=1, ground_truth=dataset / "gt.csv",
                       steps=11, peppr=False)
    assert other.computed == 2


def test_global_maps_are_written_and_peppr_json_is_strict(tmp_path, planted_path, dataset):
    r = CliRunner().invoke(main, ["global", str(planted_path), str(dataset), "--ground-truth",
                                  str(dataset / "gt.csv"), "-m", "gradcam", "--steps", "11", "--out", str(tmp_path / "g")])
    out = tmp_path / "g"
    assert r.exit_code == 0, r.output  # gt.csv in the folder is skipped, not a failure
    assert "gt.csv: skipped" in r.output
    summary = json.loads((out / "global.json").read_text())
    labels = summary["labels"]
    assert set(labels) == {"square", "cross", "ring", "triangle"}
    assert sum(v["n_images"] for v in labels.values()) == 12
    for name in labels:
        m = np.load(out / f"global_{name}.npy")
        assert m.shape == (64, 64) and m.dtype == np.float32 and m.sum() == pytest.approx(1.0, abs=1e-4)
        assert np.load(out / f"global_{name}_std.npy").shape == (64, 64)
        assert Image.open(out / f"global_{name}.png").size == (256, 256)
    assert np.load(out / "global_overall.npy").sum() == pytest.approx(1.0, abs=1e-4)
    assert Image.open(out / "global_sheet.png").size[0] > 1000

    def refuse(c):
        raise ValueError(c)

    peppr = json.loads((out / "peppr.json").read_text(), parse_constant=refuse)
    for block in [*peppr["labels"].values(), peppr["overall"]]:
        assert {"n_images", "erase", "restore", "erase_random", "restore_random", "peppr", "own_map"} <= set(block)
        assert len(block["erase"]) == 11 and block["erase"][0][0] == 0.0 and block["erase"][-1][0] == 1.0
        assert np.isfinite(block["peppr"]) and np.isfinite(block["own_map"]["peppr"])
    assert peppr["overall"]["n_images"] == 12
    assert Image.open(out / "peppr.png").size[0] > 800


def test_bad_files_in_the_folder_are_recorded_and_the_others_aggregated(tmp_path, planted_path, dataset):
    (dataset / "notes.txt").write_text("hello")
    (dataset / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "g"
    r = CliRunner().invoke(main, ["global", str(planted_path), str(dataset), "-m", "gradcam", "--no-peppr",
                                  "--target", "predicted", "--out", str(out)])
    assert r.exit_code == 1, r.output
    assert "zz_corrupt.png: not a readable image" in r.output and "Traceback" not in r.output
    summary = json.loads((out / "global.json").read_text())
    assert [f["name"] for f in summary["failures"]] == ["zz_corrupt.png"]
    assert sorted(s["name"] for s in summary["skipped"]) == ["gt.csv", "notes.txt"]
    assert summary["n_images"] == 12 and not (out / "peppr.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--target", "truth"], "--target truth needs the labels"),
    (["--ground-truth", "BAD"], "label 'hexagon' is not one of the model's labels"),
    (["--steps", "5"], "5 is not in the range x>=11"),
])
def test_bad_options_are_one_line(tmp_path, planted_path, dataset, args, message):
    (dataset / "bad.csv").write_text("image,label\nh00.png,hexagon\n")
    args = [str(dataset / "bad.csv") if a == "BAD" else a for a in args]
    r = CliRunner().invoke(main, ["global", str(planted_path), str(dataset / "h00.png"), "--out",
                                  str(tmp_path / "o"), *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_manifest_labels_are_the_ground_truth(tmp_path, planted_path, dataset, heldout):
    rows = ["image,label"] + [f"h{i:02d}.png,{int(heldout['labels'][i])}" for i in range(4)]
    (dataset / "m.csv").write_text("\n".join(rows) + "\n")
    clf = Classifier(planted_path, device="cpu")
    res = run_global(clf, [dataset / "m.csv"], tmp_path / "o", method="gradcam", peppr=False)
    assert res.settings["target"] == "truth"
    assert [r["label"] for r in res.images] == [int(v) for v in heldout["labels"][:4]]


# -- Ray ------------------------------------------------------------------------------------------
def test_ray_run_equals_serial_run(tmp_path, planted_path, dataset):
    ray = pytest.importorskip("ray", reason="the test extra installs ray")
    from blackbox_cam.jobs.executors import RayExecutor
    from blackbox_cam.jobs.dataset import MapCache

    clf = Classifier(planted_path, device="cpu")
    items = [it for it in expand_inputs([dataset]) if not it.skip][:6]
    kw = dict(method="rise", budget=30, ground_truth=dataset / "gt.csv", steps=11)
    serial = run_global(clf, items, tmp_path / "serial", **kw)
    ex = RayExecutor(clf, {"device": "cpu"}, num_cpus=2)
    try:
        assert ex.workers == 2
        q = clf.queries
        par = run_global(clf, items, tmp_path / "ray", executor=ex, **kw)
        assert clf.queries == q, "the driver's classifier made no query: the workers did the work"
    finally:
        ex.close()
    assert not ray.is_initialized()
    assert par.computed == 6 and par.curves_computed == 6
    for name in _files(tmp_path / "serial"):
        assert filecmp.cmp(tmp_path / "serial" / name, tmp_path / "ray" / name, shallow=False), name
    a, b = MapCache(tmp_path / "serial", clf), MapCache(tmp_path / "ray", clf)
    keys = sorted(p.stem for p in (tmp_path / "serial" / "maps").glob("*.npz"))
    assert keys == sorted(p.stem for p in (tmp_path / "ray" / "maps").glob("*.npz"))
    for k in keys:
        ea, eb = a.load(k), b.load(k)
        for name, arr in ea[0].items():
            np.testing.assert_array_equal(arr, eb[0][name])


class _FlakyRay:
    """A stand-in for the ``ray`` module whose ``init`` fails ``fails`` times (as Ray does when its
    raylet misses the fixed 30 s registration window on a loaded machine); time is simulated."""

    def __init__(self, fails: int, clock: list[float]) -> None:
        self.fails, self.clock, self.calls, self.shutdowns = fails, clock, 0, 0

    def init(self, **kwargs):
        self.calls += 1
        self.clock[0] += 31.0  # each try costs Ray's 30 s wait
        if self.calls <= self.fails:
            raise Exception("The current node timed out during startup.\nmore detail")

    def shutdown(self):
        self.shutdowns += 1


def test_ray_start_is_retried_until_the_configurable_deadline():
    """Regression (issue 23): the local Ray start was tried twice with Ray's fixed 30 s wait,
    whatever the machine's load; the deadline is now --ray-start-timeout."""
    from blackbox_cam.errors import BlackboxCamError
    from blackbox_cam.jobs.executors import start_ray
    clock = [0.0]
    ray = _FlakyRay(fails=3, clock=clock)
    start_ray(ray, {}, "a local Ray runtime", timeout=120.0, clock=lambda: clock[0])
    assert ray.calls == 4 and ray.shutdowns == 3
    clock = [0.0]
    ray = _FlakyRay(fails=3, clock=clock)
    with pytest.raises(BlackboxCamError) as e:
        start_ray(ray, {}, "a local Ray runtime", timeout=60.0, clock=lambda: clock[0])
    assert ray.calls == 2 and "\n" not in str(e.value)
    assert "timed out during startup" in str(e.value) and "--ray-start-timeout (was 60 s)" in str(e.value)


def test_ray_start_timeout_is_a_global_option(tmp_path, planted_path, dataset):
    r = CliRunner().invoke(main, ["global", str(planted_path), str(dataset), "--ray-start-timeout", "-1",
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--ray-start-timeout" in r.output
