"""explain.json bookkeeping for a large batch: the journal-and-fold RecordBook against the
rewrite-per-record scheme it replaced (issue 23), measured in the same run.

    python bench/bench_records.py [--records 10000] [--old-records 500]

Each record is a realistic explain.json record (~1 kB: params, backend, a DE-CAM search trace
of 30 generations) with a 1 kB ``npy`` file. The reference reproduces the old commit: reread
and parse explain.json, merge, rewrite it atomically, once per record. Prints seconds for both
per record for both (the old scheme at ``--old-records``, since it is quadratic: 10,000 records
would take about half an hour), and the bytes each wrote to explain.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from blackbox_cam.io import output
from blackbox_cam.io.output import RecordBook, record_key, write_bytes, write_json


def record(i: int) -> dict:
    return {"model": "models/efficientnet_lite0.onnx", "image": f"data/img{i:05d}.png", "method": "decam",
            "predicted": 285, "label": "Egyptian cat", "score": 0.79, "target": 285,
            "params": {"budget": 2000, "seed": 0, "grid": 10, "population": 40, "resolution": 16},
            "backend": {"name": "onnxruntime", "version": "1.31.1", "device": "cpu",
                        "providers": ["CPUExecutionProvider"]},
            "queries": 2000, "seconds": 18.2, "image_size": [480, 640], "map_size": [480, 640],
            "search": {"best": [0.1 + g / 100 for g in range(30)], "grids": [10] * 30}}


def old_commit(path: Path, rec: dict, files: dict) -> None:
    """The pre-issue-23 commit: read everything, merge, write everything."""
    current = json.loads(path.read_text()) if path.exists() else []
    for suffix, data in files.items():
        name = f"{Path(rec['image']).stem}_{rec['method']}.{suffix}"
        write_bytes(path.parent / name, data)
        rec[suffix] = name
    where = {record_key(r): i for i, r in enumerate(current)}
    k = record_key(rec)
    if k in where:
        current[where[k]] = rec
    else:
        current.append(rec)
    write_json(path, current)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--old-records", type=int, default=500)
    a = ap.parse_args()
    written = {"n": 0}
    real = output.write_bytes

    def counting(path, data):
        if Path(path).name == "explain.json":
            written["n"] += len(data)
        real(path, data)

    output.write_bytes = counting
    npy = b"\0" * 1024
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with RecordBook(Path(d) / "explain.json") as book:
            for i in range(a.records):
                book.commit(record(i), {"npy": npy})
        new_s, new_bytes = time.perf_counter() - t0, written["n"]
        journal = (Path(d) / ".explain.json.journal").exists()
    written["n"] = 0
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        for i in range(a.old_records):
            old_commit(Path(d) / "explain.json", record(i), {"npy": npy})
        old_s, old_bytes = time.perf_counter() - t0, written["n"]
    print(f"RecordBook, {a.records} records: {new_s:.2f} s, {1e3 * new_s / a.records:.2f} ms/record, "
          f"{new_bytes / 1e6:.0f} MB written to explain.json (journal left behind: {journal})")
    print(f"rewrite per record, {a.old_records} records: {old_s:.2f} s, {1e3 * old_s / a.old_records:.2f} ms/record, "
          f"{old_bytes / 1e6:.0f} MB written")
    print(f"per-record ratio old/new: {(old_s / a.old_records) / (new_s / a.records):.1f}x "
          f"(the old scheme's cost per record grows with the list; the new one's does not)")


if __name__ == "__main__":
    main()
