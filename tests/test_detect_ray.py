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
