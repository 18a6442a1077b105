"""What a dataset job costs besides the model, measured on this machine (issue 29, docs/scale.md).

    python bench/bench_scale.py [--tasks 200] [--records 100000] [--cache 2000] [--budget 500]

1. **Ray per-task overhead**: a unit that does nothing but receive what a real task receives
   (the image file's bytes, its name, the method request) and return what a real task returns
   (one 224 x 224 float32 map with its standard error and metadata), through
   :class:`blackbox_cam.jobs.executors.RayExecutor` with 2 workers on a local runtime, against
   the same unit in-process (:class:`LocalExecutor`). The difference per task is Ray's
   overhead (serialisation, the object store, scheduling, the driver's ordered window), set
   against a DE-CAM explanation at ``--budget`` queries of the bundled EfficientNet-Lite0,
   measured in the same run, in-process.
2. **The record book** (:class:`blackbox_cam.io.output.RecordBook`): ``--records`` explain.json
   records committed (no map files: the record book's own cost), records per second, and the
   same with the map files (``.npy`` 224 x 224, overlay PNG bytes) for 2,000 records.
3. **The driver per image**: the map brought to the image, its ``.npy``/``_se.npy``/overlay
   ``.png`` and record written, the image read and hashed (what one Python process does for
   every image whatever the number of workers).
4. **The map cache** (:class:`blackbox_cam.jobs.dataset.MapCache`): ``--cache`` entries of
   224 x 224 maps written, then the key computation, a miss and a hit per lookup, and the
   image digest (SHA-256 of the file, the key's image part) for the bundled 240 kB PNG.

Numbers depend on the machine's load: the script prints the 1-minute load average before and
after. Results are printed as JSON (``--json FILE`` also writes them).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blackbox_cam.jobs.dataset import CachedMap, MapCache, MapRequest, file_digest  # noqa: E402
from blackbox_cam.jobs.executors import ImageSource, LocalExecutor, RayExecutor, Work  # noqa: E402
from blackbox_cam.model.runtime import Classifier  # noqa: E402

MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
IMAGE = ROOT / "models" / "images" / "chelsea.png"


def echo_unit(clf, source: ImageSource, requests, target, seed):
    """Receives a real task's arguments, returns a real task's result, computes nothing."""
    n = len(source.data or b"") if source.data is not None else 0
    m = np.full((224, 224), n % 7 / 7.0, np.float32)
    return [CachedMap(m, 285, 0.79, 285, 0.79, 500, 9.5, {"budget": 500, "seed": seed, "grid": 10}, "decam",
                      se=m * 0.1, uncertainty={"stability": 0.9}, warning=None) for _ in requests]


def per_task(executor, tasks: int, remote: bool) -> float:
    data = IMAGE.read_bytes()
    req = (MapRequest("decam", 500, (("grid", 10),)),)

    def stream():
        for i in range(tasks):
            src = ImageSource(f"img{i:05d}.png", data=data) if remote else ImageSource(f"img{i:05d}.png",
                                                                                       path=str(IMAGE))
            yield i, Work(echo_unit, (src, req, None, 0), src.name)
    t0 = time.perf_counter()
    n = sum(1 for _ in executor.imap(stream()))
    assert n == tasks
    return (time.perf_counter() - t0) / tasks


def decam_seconds(budget: int, repeats: int = 2) -> float:
    from blackbox_cam.explainer.pipeline import explain_image
    from blackbox_cam.io.images import load_image
    clf = Classifier(MODEL, device="cpu")
    img = load_image(IMAGE)
    explain_image(clf, img, "decam", budget=50)   # warm-up (Numba, sessions)
    times = []
    for s in range(repeats):
        t0 = time.perf_counter()
        explain_image(clf, img, "decam", budget=budget, seed=s)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def record_book(n: int, with_files: bool) -> float:
    from blackbox_cam.io.output import RecordBook, npy_bytes
    rec = {"model": "models/efficientnet_lite0.onnx", "method": "decam", "predicted": 285, "label": "Egyptian cat",
           "score": 0.79, "target": 285, "params": {"budget": 2000, "seed": 0, "grid": 10}, "queries": 2000,
           "seconds": 18.2, "image_size": [480, 640], "map_size": [480, 640],
           "search": {"best": [0.1 + g / 100 for g in range(30)]}}
    files = {"npy": npy_bytes(np.zeros((224, 224), np.float32)), "png": b"\x89PNG" + bytes(60_000)}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with RecordBook(Path(d) / "explain.json") as book:
            for i in range(n):
                book.commit(dict(rec, image=f"data/img{i:06d}.png"), files if with_files else None,
                            stem=f"img{i:06d}")
        dt = time.perf_counter() - t0
        assert len(json.loads((Path(d) / "explain.json").read_text())) == n
    return n / dt


def driver_per_image(n: int = 100) -> dict:
    """What the driver does per image and method besides waiting: the map brought to the image
    (:func:`~blackbox_cam.jobs.dataset.result_of`), then the ``.npy``, ``_se.npy`` and overlay
    ``.png`` written with the record (:func:`~blackbox_cam.explainer.records.commit_result`),
    for the bundled 451 x 300 chelsea.png; and reading + hashing the image."""
    from blackbox_cam.explainer.records import commit_result, result_record
    from blackbox_cam.io.images import read_image
    from blackbox_cam.io.output import RecordBook
    from blackbox_cam.jobs.dataset import result_of
    clf = Classifier(MODEL, device="cpu")
    image, size = read_image(IMAGE)
    m = np.random.default_rng(0).random((224, 224), dtype=np.float32)
    entry = CachedMap(m, 285, 0.79, 285, 0.79, 500, 9.5, {"budget": 500}, "decam", se=m * 0.1)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        t_res = t_commit = 0.0
        with RecordBook(Path(d) / "explain.json") as book:
            for i in range(n):
                t0 = time.perf_counter()
                res = result_of(clf, entry, image)
                t1 = time.perf_counter()
                rec = result_record(res, image=f"img{i:05d}.png", image_size=size)
                commit_result(book, rec, res, stem=f"img{i:05d}")
                t_commit += time.perf_counter() - t1
                t_res += t1 - t0
        out["result_ms"] = t_res / n * 1e3
        out["commit_ms"] = t_commit / n * 1e3
        out["bytes_per_image"] = sum(p.stat().st_size for p in Path(d).glob("img*"))/n
    from blackbox_cam.jobs import dataset
    t0 = time.perf_counter()
    for _ in range(20):
        dataset._DIGESTS.clear()
        read_image(IMAGE)
        file_digest(IMAGE)
    out["read_and_digest_ms"] = (time.perf_counter() - t0) / 20 * 1e3
    out["image_size"] = list(size)
    return out


def cache(n: int) -> dict:
    clf = Classifier(MODEL, device="cpu")
    out = {}
    with tempfile.TemporaryDirectory() as d:
        c = MapCache(d, clf)
        m = np.random.default_rng(0).random((224, 224), dtype=np.float32)
        entry = CachedMap(m, 1, 0.5, 1, 0.5, 500, 9.5, {"budget": 500}, "decam", se=m * 0.1)
        t0 = time.perf_counter()
        keys = [c.key(f"{i:064x}", "decam", target=None, budget=500, seed=0, options={"grid": 10}) for i in range(n)]
        out["key_us"] = (time.perf_counter() - t0) / n * 1e6
        t0 = time.perf_counter()
        for k in keys:
            c.put(k, entry)
        out["put_ms"] = (time.perf_counter() - t0) / n * 1e3
        t0 = time.perf_counter()
        for k in keys:
            assert c.get(k) is not None
        out["hit_ms"] = (time.perf_counter() - t0) / n * 1e3
        t0 = time.perf_counter()
        for i in range(n):
            assert c.get(f"missing{i}") is None
        out["miss_us"] = (time.perf_counter() - t0) / n * 1e6
        out["entry_bytes"] = c.path(keys[0]).stat().st_size
    from blackbox_cam.jobs import dataset
    t0 = time.perf_counter()
    for _ in range(50):
        dataset._DIGESTS.clear()
        file_digest(IMAGE)
    out["digest_ms_240kB"] = (time.perf_counter() - t0) / 50 * 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--cache", type=int, default=2000)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    res = {"load_before": os.getloadavg()[0], "cpus": os.cpu_count()}
    clf = Classifier(MODEL, device="cpu")
    res["local_task_ms"] = per_task(LocalExecutor(clf), a.tasks, remote=False) * 1e3
    with RayExecutor(clf, {"device": "cpu"}, num_cpus=2, workers=2, start_timeout=240) as ex:
        per_task(ex, 20, remote=True)   # warm-up: actors imported, first objects stored
        res["ray_task_ms"] = per_task(ex, a.tasks, remote=True) * 1e3
        res["ray_workers"] = ex.workers
    res["ray_overhead_ms"] = res["ray_task_ms"] - res["local_task_ms"]
    res["decam_seconds"] = decam_seconds(a.budget)
    res["decam_budget"] = a.budget
    # conservative: each of the workers is charged the whole wall time per task (tasks overlap in
    # truth), minus what the same unit costs in-process
    worker_ms = res["ray_task_ms"] * res["ray_workers"] - res["local_task_ms"]
    res["ray_overhead_worker_ms"] = worker_ms
    res["overhead_share_of_decam"] = worker_ms / 1e3 / res["decam_seconds"]
    res["record_book_records_per_s"] = record_book(a.records, with_files=False)
    res["record_book_records"] = a.records
    res["record_book_with_files_records_per_s"] = record_book(2000, with_files=True)
    res["cache"] = cache(a.cache)
    res["driver"] = driver_per_image()
    res["cache_entries"] = a.cache
    res["load_after"] = os.getloadavg()[0]
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
