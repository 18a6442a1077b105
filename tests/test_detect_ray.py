"""Detectors on the shared executor (issue 29: "the coming detector jobs take --ray"): ``detect``
and ``explain`` on a detector with ``--ray`` write the files a serial run writes, byte for byte.

One local Ray runtime (2 CPUs) is shared by the module: Ray starts slowly on a loaded machine.
The planted-cue detector (a YOLO-style head, Ultralytics' layout) answers the same whatever
ONNX Runtime's thread count, so its files are compared byte for byte.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam.cli import main
from blackbox_cam.jobs import executors

from conftest import MODELS, require

DETECTOR = MODELS / "planted_detector" / "planted_detector.onnx"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray", reason="the test extra installs ray")
    env = {"env_vars": {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}}
    executors.start_ray(ray, dict(num_cpus=2, include_dashboard=False, log_to_driver=False,
                                  configure_logging=False, runtime_env=env), "a local Ray runtime", timeout=240)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Eight held-out scenes of the planted detector beside a README and a corrupt PNG."""
    held = np.load(require(MODELS / "planted_detector" / "heldout.npz"))
    d = tmp_path_factory.mktemp("scenes") / "images"
    d.mkdir()
    for i in range(8):
        Image.fromarray(held["images"][i]).save(d / f"s{i}.png")
    (d / "README").write_text("held-out scenes\n")
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    return d


def test_detect_with_ray_writes_the_files_of_a_serial_run(tmp_path, ray_runtime, scenes):
    require(DETECTOR)
    serial = run("detect", DETECTOR, scenes, "--device", "cpu", "--out", tmp_path / "serial")
    ray = run("detect", DETECTOR, scenes, "--device", "cpu", "--out", tmp_path / "ray", "--ray", "--workers", "2")
    assert serial.exit_code == ray.exit_code == 1, ray.output   # broken.png: recorded, the others go on
    assert "Ray: 2 worker(s), 1 CPU each on 1 node(s)" in ray.output
    lines = [ln for ln in serial.output.splitlines() if ": red_tag " in ln or ": blue_tag " in ln]
    assert len(lines) >= 8 and lines == [ln for ln in ray.output.splitlines() if ln in lines]
    a, b = tmp_path / "serial", tmp_path / "ray"
    names = sorted(p.name for p in a.iterdir() if p.suffix == ".png")
    assert names == sorted(p.name for p in b.iterdir() if p.suffix == ".png") and len(names) == 8
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    assert (a / "detections.json").read_bytes() == (b / "detections.json").read_bytes()
    records = json.loads((b / "detections.json").read_text())
    assert sum(len(r.get("detections", [])) for r in records) == len(lines)
    assert [r["image"].rsplit("/", 1)[-1] for r in records if "error" in r] == ["broken.png"]
    assert [r["image"].rsplit("/", 1)[-1] for r in records if "skipped" in r] == ["README"]
    again = run("detect", DETECTOR, scenes, "--device", "cpu", "--out", b, "--ray", "--workers", "2")
    assert again.output.count("(recorded)") == len(lines)   # nothing asked again, with or without Ray


def _untimed(o):
    if isinstance(o, dict):
        return {k: _untimed(v) for k, v in o.items() if k != "seconds"}
    if isinstance(o, list):
        return [_untimed(v) for v in o]
    return o


def test_explain_on_a_detector_with_ray_writes_the_files_of_a_serial_run(tmp_path, ray_runtime, scenes):
    """Every detection's map (``drise``, ``decam``), its overlay and record, byte for byte / equal but the seconds."""
    args = ("explain", require(DETECTOR), scenes, "-m", "drise,decam", "--budget", "40", "--device", "cpu", "-q")
    serial = run(*args, "--out", tmp_path / "serial")
    ray = run(*args, "--out", tmp_path / "ray", "--ray", "--workers", "2")
    assert serial.exit_code == ray.exit_code == 1, ray.output   # broken.png recorded, the others explained
    assert "Ray: 2 worker(s)" in ray.output
    a, b = tmp_path / "serial", tmp_path / "ray"
    names = sorted(p.name for p in a.iterdir() if p.suffix in (".png", ".npy"))
    assert len(names) >= 8 * 2 * 3 and names == sorted(p.name for p in b.iterdir() if p.suffix in (".png", ".npy"))
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    ra, rb = json.loads((a / "explain.json").read_text()), json.loads((b / "explain.json").read_text())
    assert _untimed(ra) == _untimed(rb)
    assert sum("box" in r for r in rb) >= 16 and sum("error" in r for r in rb) == 2   # broken.png, per method


# --- compare and gate on a detector (raydet-a) ---
def _files(root):
    """Every file under ``root``, by its path relative to it."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _csv_untimed(path):
    """The CSV's rows without its wall-time columns (``seconds``, ``metric_seconds``)."""
    import csv
    rows = list(csv.reader(path.open(newline="")))
    keep = [i for i, k in enumerate(rows[0]) if not k.endswith("seconds")]
    return [[r[i] for i in keep] for r in rows]


def _same_but_times(a, b, timed_pictures=()):
    """Two output folders hold the same files: maps and pictures byte for byte, JSON equal but
    ``seconds``, CSV equal but its seconds columns, JUnit XML equal but ``time``; each picture in
    ``timed_pictures`` prints a map's seconds (a compare panel) and is compared only when those
    printed seconds agree. Returns how many files were compared byte for byte."""
    import re
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    same = 0
    for name, pa in fa.items():
        pb = fb[name]
        if name.endswith(".json"):
            assert _untimed(json.loads(pa.read_text())) == _untimed(json.loads(pb.read_text())), name
        elif name.endswith(".csv"):
            assert _csv_untimed(pa) == _csv_untimed(pb), name
        elif name.endswith(".xml"):
            untime = lambda p: re.sub(r' time="[^"]*"', "", p.read_text())   # noqa: E731
            assert untime(pa) == untime(pb), name
        elif name.endswith(".html") or (name in timed_pictures and timed_pictures[name] is None):
            continue   # the report's table and a panel print wall times
        else:
            assert pa.read_bytes() == pb.read_bytes(), name
            same += 1
    return same


def _panel_times(out):
    """``{panels/<stem>_det<K>.png: the seconds printed on it}`` from compare.json's rows."""
    doc = json.loads((out / "compare.json").read_text())
    times = {}
    for r in doc["rows"]:
        stem = r["image"].rsplit(".", 1)[0]
        times.setdefault(f"panels/{stem}_det{r['detection']}.png", []).append(f"{r['seconds']:.1f}")
    return times


def test_compare_on_a_detector_with_ray_writes_the_files_of_a_serial_run(tmp_path, ray_runtime, scenes):
    """Rows, failures, maps (--save-maps) and panels of ``compare`` on a detector, serial vs 2 Ray workers."""
    args = ("compare", require(DETECTOR), scenes, "-m", "occlusion,drise", "--budget", "40", "--no-road",
            "--save-maps", "--device", "cpu", "-q")
    serial = run(*args, "--out", tmp_path / "serial")
    ray = run(*args, "--out", tmp_path / "ray", "--ray", "--workers", "2")
    assert serial.exit_code == ray.exit_code == 1, ray.output   # broken.png: recorded, the others go on
    assert "Ray: 2 worker(s), 1 CPU each on 1 node(s)" in ray.output
    a, b = tmp_path / "serial", tmp_path / "ray"
    ta, tb = _panel_times(a), _panel_times(b)
    assert len(ta) >= 8 and sorted(ta) == sorted(tb)
    timed = {n: None if ta[n] != tb[n] else ta[n] for n in ta}
    same = _same_but_times(a, b, timed)
    assert same >= 2 * 2 * len(ta)   # every detection's map (.npy and .png) by both methods, byte for byte
    doc = json.loads((b / "compare.json").read_text())
    assert len(doc["rows"]) == 2 * len(ta) and {r["method"] for r in doc["rows"]} == {"occlusion", "drise"}
    assert [f["image"] for f in doc["failures"]] == ["broken.png"] and doc["failures"][0]["method"] == ""
    assert "not a readable image" in doc["failures"][0]["error"]
    assert [s["image"] for s in doc["skipped"]] == ["README"]
    assert "1 error(s), 0 retries, 1 non-image file(s) skipped" in ray.output and "(2 workers)" in ray.output


def test_gate_on_a_detector_with_ray_writes_the_files_of_a_serial_run(tmp_path, ray_runtime, scenes):
    """gate.json, the JUnit report and the failure overlays of ``gate`` on a detector, serial vs 2 Ray workers."""
    args = ("gate", require(DETECTOR), scenes, "-m", "occlusion,drise", "--budget", "40", "--box-margin", "0",
            "--min-share", "0.3", "--device", "cpu", "-q")
    serial = run(*args, "--out", tmp_path / "serial", "--junit", tmp_path / "serial" / "gate.xml")
    ray = run(*args, "--out", tmp_path / "ray", "--junit", tmp_path / "ray" / "gate.xml", "--ray", "--workers", "2")
    assert serial.exit_code == ray.exit_code == 1, ray.output   # broken.png cannot be checked: the gate fails
    assert "Ray: 2 worker(s)" in ray.output
    a, b = tmp_path / "serial", tmp_path / "ray"
    _same_but_times(a, b)
    doc = json.loads((b / "gate.json").read_text())
    cases = doc["images"]
    errors = [c for c in cases if c.get("error")]
    assert [c["image"].rsplit("/", 1)[-1] for c in errors] == ["broken.png"] * 2    # one per method
    said = [ln for ln in serial.output.splitlines() if ln.startswith("error: ")]
    assert len(said) == 2 and all(ln.count("broken.png") == 2 for ln in said), said  # the file named once (+ PIL's)
    checked = [c for c in cases if not c.get("error")]
    assert len(checked) >= 2 * 8 and all("detection" in c and "box" in c for c in checked)
    failed = [c for c in checked if not c["passed"]]
    overlays = sorted(p.name for p in (b / "overlays").glob("*.png")) if failed else []
    assert len(overlays) == len(failed)     # each failing detection's overlay, byte for byte with serial's
    assert [s["image"].rsplit("/", 1)[-1] for s in doc["skipped"]] == ["README"]
    assert serial.output.splitlines()[-1].split(" -> ")[0] == ray.output.splitlines()[-1].split(" -> ")[0]


@pytest.mark.parametrize("cmd", ["compare", "gate"])
def test_bad_ray_address_on_a_detector_writes_nothing(cmd, tmp_path, scenes):
    r = run(cmd, require(DETECTOR), scenes / "s0.png", "-m", "occlusion", "--device", "cpu", "--out", tmp_path / "o",
            "--ray", "127.0.0.1:9")
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if not ln.startswith("backend:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nothing answers at 127.0.0.1:9" in lines[0]
    assert not (tmp_path / "o").exists()


# --- global, api and detect summary on a detector (raydet-b) ---
def _summary(output):
    """The run summary line (jobs.executors.run_summary) of a command's output."""
    return next(ln for ln in output.splitlines() if " image(s), " in ln and " wall, " in ln)


def test_global_on_a_detector_with_ray_writes_the_files_of_a_serial_run(tmp_path, ray_runtime, scenes):
    """Box-aligned label maps, their pictures and global.json, byte for byte (global.json has no timed field)."""
    args = ("global", require(DETECTOR), scenes, "-m", "drise", "--budget", "60", "--device", "cpu", "-q")
    serial = run(*args, "--out", tmp_path / "serial")
    ray = run(*args, "--out", tmp_path / "ray", "--ray", "--workers", "2")
    assert serial.exit_code == ray.exit_code == 1, ray.output   # broken.png recorded, the others aggregated
    assert "Ray: 2 worker(s), 1 CPU each" in ray.output
    a, b = tmp_path / "serial", tmp_path / "ray"
    names = sorted(p.name for p in a.iterdir())
    assert {"global_red_tag.npy", "global_blue_tag.npy", "global_overall.npy", "global_sheet.png",
            "global.json"} <= set(names) and names == sorted(p.name for p in b.iterdir())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    doc = json.loads((b / "global.json").read_text())
    assert _untimed(doc) == doc and doc["settings"]["task"] == "detector"
    assert [f["name"] for f in doc["failures"]] == ["broken.png"] and [s["name"] for s in doc["skipped"]] == ["README"]
    n = len(doc["images"])                                   # one record per detection
    assert n >= 8 and [i["name"] for i in doc["images"]] == sorted((i["name"] for i in doc["images"]),
                                                                   key=lambda s: int(s[1:-4]))   # input order
    assert _summary(ray.output).startswith(f"9 image(s), {n} map(s), 1 error(s), 0 retries, "
                                           "1 non-image file(s) skipped; ")
    assert _summary(ray.output).endswith("(2 workers)") and _summary(serial.output).endswith("(1 worker)")


@pytest.mark.parametrize("bad, says", [(("--ray", "127.0.0.1:9"), "nothing answers at 127.0.0.1:9"),
                                       (("--workers", "2"), "--workers and --ray-gpus-per-worker need --ray")])
def test_global_on_a_detector_bad_ray_option_is_one_line_exit_2_nothing_written(tmp_path, scenes, bad, says):
    r = run("global", require(DETECTOR), scenes, "-m", "drise", "--budget", "60", "--device", "cpu",
            "--out", tmp_path / "o", *bad)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if not ln.startswith("backend:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], r.output
    assert not (tmp_path / "o").exists()


def test_api_explain_a_detector_with_ray_equals_the_serial_call(ray_runtime, scenes):
    """``bc.explain(detector, [...], ray=True)``: the same maps, boxes and order as without ray=,
    files and an in-memory array alike; an image with no detection gives [] and a warning both ways."""
    import blackbox_cam as bc
    files = [str(scenes / f"s{i}.png") for i in range(4)]
    blank = np.full((96, 128, 3), 127, np.uint8)             # nothing to detect
    images = files + [np.asarray(Image.open(files[3]).convert("RGB")), blank]
    with pytest.warns(UserWarning, match="image"):
        serial = bc.explain(str(DETECTOR), images, "drise", budget=40, progress=False)
    with pytest.warns(UserWarning, match="image"):
        ray = bc.explain(str(DETECTOR), images, "drise", budget=40, progress=False, ray=True, workers=2)
    assert [len(r) for r in serial] == [len(r) for r in ray] and serial[-1] == [] and sum(map(len, ray)) >= 5
    for one, other in zip(serial, ray):
        for s, r in zip(one, other):
            assert np.array_equal(s.saliency, r.saliency)
            assert (s.box, s.target, s.detection, s.score, s.source, s.stem, s.image_size) == \
                   (r.box, r.target, r.detection, r.score, r.source, r.stem, r.image_size)
    with pytest.raises(bc.BlackboxCamError, match="broken.png: not a readable image"):
        bc.explain(str(DETECTOR), [files[0], str(scenes / "broken.png")], "drise", budget=40, progress=False,
                   ray=True, workers=2)


def test_detect_with_ray_ends_with_the_run_summary(tmp_path, ray_runtime, scenes):
    args = ("detect", require(DETECTOR), scenes, "--device", "cpu", "--out", tmp_path / "o", "--ray", "--workers", "2")
    first, again = run(*args), run(*args)
    assert first.exit_code == again.exit_code == 1, first.output   # broken.png
    assert _summary(first.output).startswith("9 image(s), 8 overlay(s) (8 made, 0 from the cache), 1 error(s), "
                                             "0 retries, 1 non-image file(s) skipped; ")
    assert _summary(again.output).startswith("9 image(s), 8 overlay(s) (0 made, 8 from the cache), 1 error(s)")
    assert _summary(first.output).endswith("images/s/worker (2 workers)")


def test_explain_on_a_detector_with_ray_ends_with_the_run_summary(tmp_path, ray_runtime, scenes):
    r = run("explain", require(DETECTOR), scenes, "-m", "drise", "--budget", "20", "--device", "cpu", "-q",
            "--out", tmp_path / "o", "--ray", "--workers", "2")
    assert r.exit_code == 1, r.output                          # broken.png
    n = len(json.loads((tmp_path / "o" / "explain.json").read_text())) - 2   # one record per map, README, broken
    assert n >= 8 and _summary(r.output).startswith(f"9 image(s), {n} map(s), 1 error(s), 0 retries, "
                                                    "1 non-image file(s) skipped; ")
