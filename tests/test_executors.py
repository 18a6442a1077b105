"""Every dataset job on one executor (issue 29): a Ray run writes the files a serial run writes,
survives killed workers, resumes after Ctrl-C, places GPU workers; folders as users have them;
bad input is one line, exit 2, nothing written.

One local Ray runtime (2 CPUs, and 2 *declared* GPUs so the placement logic can be checked on
a machine without any) is shared by the module: Ray starts slowly on a loaded machine. Runs
that must stay on CPU say ``--device cpu``.
"""
from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam.cli import main
from blackbox_cam.jobs import executors
from blackbox_cam.jobs.executors import Failed, RayExecutor, Work, plan_workers
from blackbox_cam.model.runtime import Classifier

from conftest import EFFNET, IMAGES, PLANTED, require

MODEL = PLANTED / "planted.onnx"
METHODS = "decam,rise,gradcam"
BUDGET = "30"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def strict(path: Path):
    """Parse a JSON file refusing NaN/Infinity (the record book writes strict JSON)."""
    def refuse(c):
        raise ValueError(f"{path}: non-strict JSON constant {c}")
    return json.loads(path.read_text(), parse_constant=refuse)


def without(o, keys=("seconds", "metric_seconds")):
    """``o`` without timing keys (the only thing a Ray run may write differently)."""
    if isinstance(o, dict):
        return {k: without(v, keys) for k, v in o.items() if k not in keys}
    if isinstance(o, list):
        return [without(v, keys) for v in o]
    return o


def files(out: Path, skip=(".json", ".npz", ".xml", ".lock", ".journal")) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if p.is_file() and not p.name.endswith(skip) and not p.name.startswith("."))


def assert_same_files(a: Path, b: Path) -> None:
    names = files(a)
    assert names and names == files(b)
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def assert_same_cache(a: Path, b: Path) -> None:
    """Same keys under maps/, same arrays, same metadata but the seconds."""
    ka = sorted(p.name for p in (a / "maps").glob("*.npz"))
    assert ka and ka == sorted(p.name for p in (b / "maps").glob("*.npz"))
    for k in ka:
        with np.load(a / "maps" / k) as za, np.load(b / "maps" / k) as zb:
            assert set(za.files) == set(zb.files)
            for f in za.files:
                if f == "meta":
                    assert without(json.loads(str(za[f]))) == without(json.loads(str(zb[f]))), k
                else:
                    np.testing.assert_array_equal(za[f], zb[f])


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray", reason="the test extra installs ray")
    env = {"env_vars": {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}}
    executors.start_ray(ray, dict(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
                                  configure_logging=False, runtime_env=env), "a local Ray runtime", timeout=240)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, heldout):
    """24 planted images as users keep them: beside a README, a LICENSE.md and a labels CSV."""
    d = tmp_path_factory.mktemp("folder") / "images"
    d.mkdir()
    for i in range(24):
        Image.fromarray(heldout["images"][i]).save(d / f"h{i:02d}.png")
    (d / "README").write_text("24 planted images\n")
    (d / "LICENSE.md").write_text("CC0\n")
    (d / "labels.csv").write_text("image,label\nh00.png,0\n")
    return d


@pytest.fixture(scope="module")
def serial(tmp_path_factory, folder):
    """explain, compare and gate over the folder, in this process (the reference)."""
    out = tmp_path_factory.mktemp("serial")
    results = {}
    for cmd, extra in _COMMANDS.items():
        r = run(cmd, MODEL, folder, "-m", METHODS, "--budget", BUDGET, "--device", "cpu", "--out", out / cmd,
                *extra(out / cmd))
        results[cmd] = r
    return out, results


_COMMANDS = {
    "explain": lambda out: (),
    "compare": lambda out: ("--no-road", "--save-maps"),
    "gate": lambda out: ("--forbid", "0,0,24,24", "--junit", out / "gate.xml"),
}


# -- same files, whatever runs them -------------------------------------------------------------------
@pytest.mark.parametrize("cmd", list(_COMMANDS))
def test_ray_run_writes_the_files_of_a_serial_run(cmd, tmp_path, ray_runtime, folder, serial):
    ref_root, ref_results = serial
    ref = ref_root / cmd
    assert ref_results[cmd].exit_code in (0, 1), ref_results[cmd].output
    r = run(cmd, MODEL, folder, "-m", METHODS, "--budget", BUDGET, "--device", "cpu", "--out", tmp_path / cmd,
            "--ray", "--workers", "2", *_COMMANDS[cmd](tmp_path / cmd))
    assert r.exit_code == ref_results[cmd].exit_code, r.output
    assert "Ray: 2 worker(s), 1 CPU each on 1 node(s)" in r.output
    summary = [ln for ln in r.output.splitlines() if ln.startswith("24 image(s), 72 map(s)")]
    assert summary and "0 error(s), 0 retries, 3 non-image file(s) skipped" in summary[0], r.output
    assert "note: skipped 3 non-image file(s): LICENSE.md, README, labels.csv" in r.output
    out = tmp_path / cmd
    assert_same_cache(ref, out)
    if cmd == "explain":
        assert_same_files(ref, out)      # every .npy, _se.npy and overlay .png, byte for byte
        a, b = strict(ref / "explain.json"), strict(out / "explain.json")
        assert len(a) == 24 * 3 + 3 and without(a) == without(b)
        assert {r["method"] for r in b if r.get("method")} == {"decam", "rise", "gradcam"}
        assert all("search" in r for r in b if r.get("method") == "decam")   # DE-CAM's record travels too
    elif cmd == "compare":
        assert_same_files(ref / "explain", out / "explain")
        assert without(strict(ref / "compare.json")) == without(strict(out / "compare.json"))
        assert len(strict(out / "compare.json")["rows"]) == 72
    else:
        assert_same_files(ref, out)      # the failure overlays
        assert without(strict(ref / "gate.json")) == without(strict(out / "gate.json"))
        untimed = (lambda p: re.sub(r'time="[0-9.]+"', 'time=""', p.read_text()))
        assert untimed(ref / "gate.xml") == untimed(out / "gate.xml")
        assert strict(out / "gate.json")["skipped"] and "not checked" not in r.stdout


def test_bc_explain_with_ray_equals_bc_explain(ray_runtime, folder):
    import blackbox_cam as bc
    images = [folder / f"h{i:02d}.png" for i in range(4)]
    serial = bc.explain(MODEL, images, "rise", budget=30, device="cpu", progress=False)
    on_ray = bc.explain(MODEL, images, "rise", budget=30, device="cpu", progress=False, ray=True, workers=2)
    assert [r.source for r in on_ray] == [str(p) for p in images]
    for a, b in zip(serial, on_ray):
        np.testing.assert_array_equal(a.saliency, b.saliency)
        np.testing.assert_array_equal(a.se, b.se)
        assert (a.target, a.score, a.explanation.queries) == (b.target, b.score, b.explanation.queries)


# -- fault tolerance ----------------------------------------------------------------------------------
def _patched(monkeypatch, hook):
    """Make the CLI's executor a Ray one whose stream calls ``hook(executor, i)`` before result i."""
    made = []
    original = executors.make_executor

    def make(*args, **kwargs):
        ex = original(*args, **kwargs)
        stream = ex.imap

        def imap(tasks):
            for i, got in enumerate(stream(tasks)):
                hook(ex, i)
                yield got
        ex.imap = imap
        made.append(ex)
        return ex
    monkeypatch.setattr(executors, "make_executor", make)
    return made


def test_a_worker_killed_by_its_pid_mid_run_is_retried_and_every_map_is_written_once(
        tmp_path, monkeypatch, ray_runtime, folder, serial):
    killed = []

    def kill(ex, i):
        if i == 1:   # tasks are in flight on both workers: kill one outright
            killed.append(ex.pids()[0])
            os.kill(killed[0], signal.SIGKILL)
    made = _patched(monkeypatch, kill)
    out = tmp_path / "explain"
    r = run("explain", MODEL, folder, "-m", METHODS, "--budget", BUDGET, "--device", "cpu", "--out", out,
            "--ray", "--workers", "2")
    assert r.exit_code == 0, r.output
    assert killed and made[0].retries >= 1
    assert re.search(r"24 image\(s\), 72 map\(s\) \(72 made, 0 from the cache\), 0 error\(s\), [1-9]\d* retr", r.output)
    book = strict(out / "explain.json")           # strict JSON, one record per (image, method)
    keys = [(r["image"], r["method"]) for r in book]
    assert len(keys) == len(set(keys)) == 24 * 3 + 3
    assert_same_files(serial[0] / "explain", out)
    assert without(book) == without(strict(serial[0] / "explain" / "explain.json"))


def _poison(clf, name):
    """A unit whose worker dies on one image, every time (as a segfaulting decoder would)."""
    if name == "poison.png":
        os._exit(1)
    return f"{name}: {clf.num_classes} classes"


def test_three_deaths_on_one_image_record_an_error_and_the_job_goes_on(ray_runtime):
    import ray.cloudpickle
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the workers cannot import this file
    names = ["a.png", "poison.png", "b.png", "c.png"]
    with RayExecutor(Classifier(MODEL, device="cpu"), {"device": "cpu"}, workers=2) as ex:
        got = list(ex.imap((n, Work(_poison, (n,), n)) for n in names))
    assert [n for n, _ in got] == names                   # order kept
    assert [v for n, v in got if n != "poison.png"] == [f"{n}: 4 classes" for n in ("a.png", "b.png", "c.png")]
    bad = dict(got)["poison.png"]
    assert isinstance(bad, Failed) and "poison.png: its Ray worker died 3 times" in bad.error
    assert ex.retries >= 2     # the poison's two resends, and any task queued behind it on a dying worker


def test_a_run_after_ctrl_c_recomputes_nothing_that_was_written(tmp_path, monkeypatch, ray_runtime, folder):
    def interrupt(ex, i):
        if i == 5:
            raise KeyboardInterrupt
    _patched(monkeypatch, interrupt)
    out = tmp_path / "explain"
    args = ("explain", MODEL, folder, "-m", "rise,gradcam", "--budget", BUDGET, "--device", "cpu", "--out", out,
            "--ray", "--workers", "2")
    r = run(*args)
    assert r.exit_code == 130, r.output
    first = [r for r in strict(out / "explain.json") if r.get("method")]
    assert len(first) == 2 * 5                              # five images committed before Ctrl-C
    monkeypatch.undo()
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert "24 image(s), 48 map(s) (38 made, 10 from the cache)" in r.output
    again = {(r["image"], r["method"]): r for r in strict(out / "explain.json") if r.get("method")}
    assert all(again[(r["image"], r["method"])]["cached"] for r in first)


# -- GPUs in the cluster (declared, not real: what the placement does) ---------------------------------
def test_plan_workers_puts_one_actor_per_gpu_when_the_cluster_has_gpus():
    cpu = plan_workers({"CPU": 16.0})
    assert (cpu.workers, cpu.num_cpus, cpu.num_gpus, cpu.device) == (16, 1.0, 0.0, None)
    gpu = plan_workers({"CPU": 64.0, "GPU": 8.0})
    assert (gpu.workers, gpu.num_gpus, gpu.device) == (8, 1.0, "auto")
    assert plan_workers({"CPU": 64.0, "GPU": 8.0}, gpus_per_worker=0.5).workers == 16
    cpu_only = plan_workers({"CPU": 64.0, "GPU": 8.0}, gpus_per_worker=0)               # CPU workers on request
    assert (cpu_only.workers, cpu_only.num_gpus, cpu_only.device) == (64, 0.0, "cpu")  # and off the GPUs
    assert plan_workers({"CPU": 64.0, "GPU": 8.0}, device="cpu").num_gpus == 0         # --device cpu
    assert plan_workers({"CPU": 4.0}, workers=8).num_cpus == 0.5                       # more workers than CPUs
    for resources, kw, says in [({"CPU": 4.0}, {"gpus_per_worker": 1}, "declares no GPU"),
                                ({"CPU": 4.0, "GPU": 2.0}, {"workers": 3}, "needs 3 GPUs; the cluster has 2"),
                                ({"CPU": 4.0}, {"workers": 0}, "--workers 0")]:
        with pytest.raises(executors.BlackboxCamError, match=re.escape(says)):
            plan_workers(resources, **kw)


def test_gpu_workers_get_one_declared_gpu_each_on_a_local_runtime(ray_runtime):
    """``ray.init(num_gpus=2)`` declares two GPUs this machine does not have: Ray gives each actor
    its own GPU id (CUDA_VISIBLE_DEVICES); the classifier asks for CUDA (``device="auto"``) and,
    finding none, runs on CPU, which the backend line says per node."""
    with RayExecutor(Classifier(MODEL, device="cpu"), {}) as ex:
        assert ex.workers == 2 and ex.plan.num_gpus == 1.0 and ex.plan.device == "auto"
        assert sorted(g for i in ex.info for g in i["gpus"]) == ["0", "1"]
        lines = ex.describe()
        assert lines[0] == "Ray: 2 worker(s), 1 GPU each on 1 node(s)"
        assert "2 worker(s) on GPU 0,1:" in lines[1] and "batch" in lines[1]


# -- folders as users have them -----------------------------------------------------------------------
def test_gate_on_the_bundled_images_skips_their_license_and_passes(tmp_path):
    """Regression (issue 29): ``gate models/efficientnet_lite0.onnx models/images`` failed with
    "1 not checked" because of models/images/LICENSE.md."""
    out = tmp_path / "gate"
    r = run("gate", require(EFFNET), IMAGES, "--forbid", "0,0,20,20", "-m", "gradcam", "--out", out)
    assert r.exit_code == 0, r.output
    assert "note: skipped 1 non-image file(s): LICENSE.md" in r.output
    assert r.stdout.startswith("gate passed: efficientnet_lite0.onnx gradcam: 0/4 images failed")
    assert "not checked" not in r.output and "error:" not in r.output


def test_a_corrupt_image_is_an_error_a_readme_is_not(tmp_path, heldout):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(heldout["images"][0]).save(d / "good.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (d / "README.txt").write_text("notes")
    r = run("explain", MODEL, d, "-m", "gradcam", "--device", "cpu", "--out", tmp_path / "o")
    assert r.exit_code == 1
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert "note: skipped 1 non-image file(s): README.txt" in r.output
    assert "2 image(s), 1 map(s) (1 made, 0 from the cache), 1 error(s)" in r.output


# -- bad input: one line, exit 2, nothing written ---------------------------------------------------
@pytest.mark.parametrize("cmd", ["explain", "compare", "gate", "global", "animate"])
@pytest.mark.parametrize("bad, says", [(("--ray", "--workers", "0"), "--workers"),
                                       (("--ray", "127.0.0.1:9"), "nothing answers at 127.0.0.1:9"),
                                       (("--workers", "2"), "--workers and --ray-gpus-per-worker need --ray"),
                                       (("--ray", "--ray-gpus-per-worker", "-1"), "--ray-gpus-per-worker")])
def test_bad_ray_options_are_one_line_exit_2_nothing_written(cmd, bad, says, tmp_path):
    extra = ("--forbid", "0,0,8,8") if cmd == "gate" else ()
    r = run(cmd, MODEL, IMAGES / "chelsea.png", "--device", "cpu", "--out", tmp_path / "o", *extra, *bad)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if not ln.startswith("backend:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], r.output
    assert not (tmp_path / "o").exists()


def test_ray_without_the_extra_installed_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)    # import ray -> ImportError, as without the extra
    r = run("explain", MODEL, IMAGES / "chelsea.png", "--device", "cpu", "--out", tmp_path / "o", "--ray")
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if not ln.startswith("backend:")]
    assert lines == ["error: --ray needs the ray package: pip install 'blackbox-cam[ray]'"]
    assert not (tmp_path / "o").exists()
