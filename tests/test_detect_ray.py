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
