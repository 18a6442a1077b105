"""explain.json at scale: O(n) writes for n records, strict JSON on disk after Ctrl-C or a kill.

Regression for issue 23: every record used to reread and rewrite the whole list (O(n^2) bytes
for a batch of n images). The speed itself is measured by bench/bench_records.py; here the
guard is structural (how many times the file is rewritten) and about what is on disk.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from blackbox_cam.io import output
from blackbox_cam.io.output import RecordBook, unique_stem

ROOT = Path(__file__).resolve().parents[1]


def strict_load(path: Path) -> list:
    return json.loads(path.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def test_ten_thousand_records_rewrite_explain_json_a_few_times_not_per_record(tmp_path, monkeypatch):
    writes = []
    real = output.write_json
    monkeypatch.setattr(output, "write_json", lambda path, obj: (writes.append(len(obj)), real(path, obj)))
    with RecordBook(tmp_path / "explain.json") as book:
        for i in range(10_000):
            book.commit({"image": f"img{i}.png", "method": "rise", "score": i / 7})
    recs = strict_load(tmp_path / "explain.json")
    assert len(recs) == 10_000 and recs[-1]["score"] == 9999 / 7
    # geometric folds: each rewrite happens after a quarter of the file's size in new records
    assert len(writes) <= 40, len(writes)
    assert sum(writes) <= 6 * 10_000, sum(writes)  # total records written, vs 50 million per-record
    assert not (tmp_path / ".explain.json.journal").exists()


def test_stems_follow_the_same_rule_as_unique_stem(tmp_path):
    book = RecordBook(tmp_path / "explain.json")
    images = ["a/cat.png", "b/cat.png", "a/cat.png", "cat.jpg", "b/cat.png"]
    got = [book.commit({"image": im, "method": m}, {"npy": b"x"})["stem"]
           for im, m in zip(images, ["rise", "rise", "decam", "rise", "decam"])]
    assert got == ["cat", "cat-2", "cat", "cat-3", "cat-2"]
    recs = book.records()
    # the pure rule and the book's index agree, for a known image and for a new one
    assert [unique_stem(im, "cat", recs) for im in ("b/cat.png", "c/cat.png")] == ["cat-2", "cat-4"]
    assert book.commit({"image": "c/cat.png", "method": "rise"}, {"npy": b"x"})["stem"] == "cat-4"
    recs = recs + [book.records()[-1]]
    assert {r["npy"] for r in recs} == {"cat_rise.npy", "cat-2_rise.npy", "cat_decam.npy", "cat-3_rise.npy",
                                        "cat-2_decam.npy", "cat-4_rise.npy"}


def test_another_books_records_are_seen_before_the_fold(tmp_path):
    a, b = RecordBook(tmp_path / "explain.json"), RecordBook(tmp_path / "explain.json")
    a.commit({"image": "x.png", "method": "rise"}, {"npy": b"1"})
    assert b.commit({"image": "x.png", "method": "decam"}, {"npy": b"2"})["stem"] == "x"  # same image, same stem
    assert b.commit({"image": "y/x.png", "method": "rise"}, {"npy": b"3"})["stem"] == "x-2"
    assert len(a.records()) == 3
    a.close()
    assert len(strict_load(tmp_path / "explain.json")) == 3


_WRITER = textwrap.dedent("""
    import sys, time
    from blackbox_cam.io.output import RecordBook
    with RecordBook(sys.argv[1]) as book:
        for i in range(100_000):
            book.commit({"image": f"img{i}.png", "method": "rise"}, {"npy": b"x" * 100})
            if i == 5:
                print("started", flush=True)
""")


def _start(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "explain.json")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "started"
    time.sleep(0.3)
    return p


def _check_files_and_records_agree(folder: Path, recs: list) -> None:
    named = {r["npy"] for r in recs}
    on_disk = {f.name for f in folder.glob("*.npy")}
    assert named == on_disk, (len(named), len(on_disk))


def test_ctrl_c_leaves_strict_json_listing_every_written_map(tmp_path):
    p = _start(tmp_path)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120)
    recs = strict_load(tmp_path / "explain.json")  # folded on the way out
    assert len(recs) > 5
    _check_files_and_records_agree(tmp_path, recs)


def test_a_killed_run_is_folded_in_by_the_next_book(tmp_path):
    p = _start(tmp_path)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    on_disk = strict_load(tmp_path / "explain.json") if (tmp_path / "explain.json").exists() else []
    book = RecordBook(tmp_path / "explain.json")  # folds the journal at once
    recs = strict_load(tmp_path / "explain.json")
    assert len(recs) >= len(on_disk) and len(recs) > 5
    assert recs == book.records()
    # at most the record being written when the kill came has a file but no line
    named = {r["npy"] for r in recs}
    assert len({f.name for f in tmp_path.glob("*.npy")} - named) <= 1
