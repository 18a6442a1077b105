"""Honest outputs (issue 9): nothing written lies, is lost, unreadable or half-written.

Each test is named for the defect it guards and failed before the fix.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper
from PIL import Image

from blackbox_cam.cli import main
from blackbox_cam.io.output import RecordBook, json_text, write_json

from conftest import save_model

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def strict_load(path: Path):
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture()
def pics(tmp_path, heldout):
    d = tmp_path / "pics"
    (d / "a").mkdir(parents=True)
    (d / "b").mkdir()
    for i, rel in enumerate(("a/cat.png", "b/cat.png", "p3.png", "p3.jpg", "one.png", "two.png")):
        Image.fromarray(heldout["images"][i]).save(d / rel)
    return d


# -- 3. NaN / Inf -------------------------------------------------------------------------------------
def test_nan_scores_fail_that_image_and_the_others_go_on(tmp_path, pics):
    # logits = [log(mean pixel - 0.3), -log(...)]: NaN for dark images, finite for bright ones
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Flatten", ["m"], ["f"]), helper.make_node("Sub", ["f", "c"], ["d"]),
             helper.make_node("Log", ["d"], ["l"]), helper.make_node("Neg", ["l"], ["n"]),
             helper.make_node("Concat", ["l", "n"], ["out"], axis=1)]
    graph = helper.make_graph(nodes, "nan", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor("c", TensorProto.FLOAT, [], [0.3])])
    path = save_model(graph, tmp_path / "nan.onnx")
    (tmp_path / "nan.json").write_text('{"preprocess": "unit"}')
    dark, bright = tmp_path / "dark.png", tmp_path / "bright.png"
    Image.new("RGB", (8, 8), (10, 10, 10)).save(dark)
    Image.new("RGB", (8, 8), (240, 240, 240)).save(bright)
    out = tmp_path / "out"
    r = run("explain", path, dark, bright, "-m", "occlusion", "--budget", "20", "--out", out)
    assert r.exit_code == 1, r.output
    assert "NaN/inf" in r.output and "Traceback" not in r.output
    recs = strict_load(out / "explain.json")
    assert "NaN/inf" in recs[0]["error"] and "npy" not in recs[0]
    assert "error" not in recs[1] and np.isfinite(recs[1]["score"])


def test_json_is_strict_nan_becomes_null():
    doc = {"a": float("nan"), "b": np.float32("inf"), "c": np.array([1.0, np.nan]), "d": [np.int64(3)]}
    assert json.loads(json_text(doc)) == {"a": None, "b": None, "c": [1.0, None], "d": [3]}
    assert "NaN" not in json_text(doc) and "Infinity" not in json_text(doc)


# -- 2. stems that collide --------------------------------------------------------------------------
def test_images_with_the_same_stem_get_their_own_files(tmp_path, planted_path, pics):
    out = tmp_path / "out"
    r = run("explain", planted_path, pics / "a/cat.png", pics / "b/cat.png", pics / "p3.png", pics / "p3.jpg",
            "-m", "rise", "--budget", "12", "--out", out)
    assert r.exit_code == 0, r.output
    recs = strict_load(out / "explain.json")
    assert [rec["npy"] for rec in recs] == ["cat_rise.npy", "cat-2_rise.npy", "p3_rise.npy", "p3-2_rise.npy"]
    maps = [np.load(out / rec["npy"]) for rec in recs]
    assert not np.array_equal(maps[0], maps[1])  # two images, two maps (different pictures)
    # the rule holds across runs: b/cat.png keeps cat-2, a new c/cat.png gets cat-3
    (pics / "c").mkdir()
    Image.open(pics / "one.png").save(pics / "c/cat.png")
    r = run("explain", planted_path, pics / "b/cat.png", pics / "c/cat.png", "-m", "rise", "--budget", "12",
            "--out", out)
    assert r.exit_code == 0, r.output
    by_image = {Path(rec["image"]).relative_to(pics).as_posix(): rec["npy"] for rec in strict_load(out / "explain.json")}
    assert by_image == {"a/cat.png": "cat_rise.npy", "b/cat.png": "cat-2_rise.npy", "p3.png": "p3_rise.npy",
                        "p3.jpg": "p3-2_rise.npy", "c/cat.png": "cat-3_rise.npy"}


# -- 7. explain.json merged across runs, under a lock -------------------------------------------------
def test_second_run_into_the_same_out_keeps_the_first_runs_records(tmp_path, planted_path, pics):
    out = tmp_path / "out"
    assert run("explain", planted_path, pics / "one.png", "-m", "rise", "--budget", "12", "--out", out).exit_code == 0
    assert run("explain", planted_path, pics / "two.png", "-m", "rise,occlusion", "--budget", "12",
               "--out", out).exit_code == 0
    assert run("explain", planted_path, pics / "one.png", "-m", "rise", "--budget", "12", "--seed", "3",
               "--out", out).exit_code == 0
    recs = strict_load(out / "explain.json")
    keys = [(Path(r["image"]).name, r["method"]) for r in recs]
    assert keys == [("one.png", "rise"), ("two.png", "rise"), ("two.png", "occlusion")]
    assert recs[0]["params"]["seed"] == 3  # replaced in place by the newer run
    assert all((out / r["npy"]).exists() for r in recs)


def test_concurrent_runs_lose_no_records(tmp_path):
    script = textwrap.dedent("""
        import sys
        from blackbox_cam.io.output import RecordBook
        book = RecordBook(sys.argv[1])
        for i in range(25):
            book.commit({"image": f"{sys.argv[2]}/img{i}.png", "method": "rise"}, {"npy": b"x" * 1000})
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "explain.json"), who], env=env)
             for who in ("left", "right")]
    try:  # generous: importing the package takes long on a loaded machine
        assert [p.wait(timeout=900) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    recs = strict_load(tmp_path / "explain.json")
    assert len(recs) == 50
    assert {r["image"] for r in recs} == {f"{w}/img{i}.png" for w in ("left", "right") for i in range(25)}
    # both runs name img<i>.png; stems are unique across them (img3 / img3-2), so no file is shared
    assert len({r["npy"] for r in recs}) == 50


# -- 8. file modes --------------------------------------------------------------------------------------
def test_output_files_get_the_normal_mode_not_0600(tmp_path, planted_path, pics):
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        assert run("explain", planted_path, pics / "one.png", "-m", "rise", "--budget", "12",
                   "--out", out).exit_code == 0
        for name in ("explain.json", "one_rise.npy", "one_rise.png"):
            assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
        os.umask(0o027)
        write_json(tmp_path / "x.json", {})
        assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o640
    finally:
        os.umask(old)


# -- 9. Ctrl-C -------------------------------------------------------------------------------------------
def test_ctrl_c_exits_130_and_leaves_no_temp_file_or_unlisted_map(tmp_path, planted_path, pics, monkeypatch):
    import blackbox_cam.io.output as output
    real = output.write_bytes

    def interrupted_write(path, data):
        real(path, data)
        if Path(path).name == "two_rise.npy":  # its .npy is on disk, its .png and record not yet
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(output, "write_bytes", interrupted_write)
    out = tmp_path / "out"
    r = run("explain", planted_path, pics / "one.png", pics / "two.png", pics / "p3.png", "-m", "rise",
            "--budget", "12", "--out", out)
    assert r.exit_code == 130, r.output
    assert "interrupted" in r.output and "Aborted" not in r.output
    left = sorted(p.name for p in out.iterdir() if p.is_file())
    assert not [n for n in left if n.endswith(".tmp")]
    recs = strict_load(out / "explain.json")
    listed = {r_["npy"] for r_ in recs} | {r_["png"] for r_ in recs} | {r_["se"] for r_ in recs if "se" in r_}
    assert {n for n in left if n.endswith((".npy", ".png"))} == listed  # nothing unlisted (issue 21: _se.npy too)
    assert [Path(r_["image"]).name for r_ in recs] == ["one.png", "two.png"]  # the commit finished, then stopped


def test_record_book_refuses_a_foreign_explain_json(tmp_path):
    (tmp_path / "explain.json").write_text('{"not": "a list"}')
    from blackbox_cam.errors import BlackboxCamError
    with pytest.raises(BlackboxCamError, match="not a list of records"):
        RecordBook(tmp_path / "explain.json")
