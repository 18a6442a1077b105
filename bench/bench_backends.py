"""Backends on this CPU: raw images/s, DE-CAM and RISE seconds per image, beside OpenVINO XAI's RISE.

Not a test. Everything is measured in one run and interleaved (each round visits every backend
in turn), so load from other processes on a shared machine hits all of them alike; medians
over rounds are reported, and ratios are taken within a round.

* raw: images/s of ``session.run`` alone on a ready batch at each backend's automatic batch
  size (what :class:`~blackbox_cam.model.runtime.Classifier` picks when ``--batch-size`` is not given);
* methods: DE-CAM and RISE at ``--budget`` queries per image on the bundled images, seconds
  (and CPU-seconds of the process) per image per backend; with ``--ov-python`` also OpenVINO
  XAI's RISE at the same number of masks (with its default CPU pinning and with pinning off, as
  ours) and its AISE at about as many queries, pinning off (``bench/ov_xai.py``: run in that
  environment, timed around its ``explainer(...)`` call only; queries counted), and the goal
  ratio *DE-CAM at 2000 queries / OpenVINO XAI RISE at 2000* (goal <= 0.6);
* ceiling: images/s of the model alone on one thread, on one session with a thread per core,
  and with one single-threaded session per core side by side (:func:`ceiling`), and the rate
  the goal ratio would need;
* ``--sweep``: the settings study behind the OpenVINO backend's defaults: images/s for
  ``LATENCY`` (one stream, one synchronous request) and ``THROUGHPUT`` (one stream per core, the
  batch split over as many asynchronous requests), CPU pinning on/off, at batch 1..32, with ONNX
  Runtime at the same batches.

    python bench/bench_backends.py --ov-python /work/ovenv/bin/python
    python bench/bench_backends.py --sweep --rounds 3

Results: ``bench/results/backends.md`` and ``.json`` (``--sweep``: ``backends_sweep.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
IMAGES = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png"]


# -- measurements ----------------------------------------------------------------------------------
def images_per_second(run, n: int, seconds: float, cpu: list | None = None) -> float:
    """``run()`` scores ``n`` images; call it for about ``seconds`` after one warm-up call. With
    ``cpu``, also append images per CPU-second of this process (all its threads): the work per
    image, which other processes' load changes much less than the wall time."""
    run()
    done, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        run()
        done += n
    if cpu is not None:
        cpu.append(done / max(time.process_time() - c0, 1e-9))
    return done / (time.perf_counter() - t0)


def raw(clfs: dict, rounds: int, seconds: float) -> dict:
    """Images/s of each classifier's session at its own batch, interleaved over ``rounds``."""
    feeds = {b: {c.input_name: c.to_feed(np.random.default_rng(0).normal(size=(c.batch_size, 3) + c.input_size)
                                        .astype(np.float32))} for b, c in clfs.items()}
    out: dict[str, list[float]] = {b: [] for b in clfs}
    for _ in range(rounds):
        for b, c in clfs.items():
            out[b].append(images_per_second(lambda c=c, f=feeds[b]: c.session.run([c.output_name], f),
                                            c.batch_size, seconds))
    return out


def ceiling(seconds: float, batch: int = 8) -> dict:
    """What this machine can do with the model at best: images/s of one single-threaded ONNX Runtime
    session (one core's worth) and of one such session per core run side by side on parts of the
    batch (threads; ORT releases the GIL), next to the default two-thread session. The last is the
    ceiling any method's queries per second can approach on this CPU."""
    from concurrent.futures import ThreadPoolExecutor

    import onnxruntime as ort

    def session(threads: int):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        return ort.InferenceSession(str(MODEL), so, providers=["CPUExecutionProvider"])
    cores = os.cpu_count() or 1
    x = np.random.default_rng(0).normal(size=(batch, 3, 224, 224)).astype(np.float32)
    ones = [session(1) for _ in range(cores)]
    name = ones[0].get_inputs()[0].name
    full = session(cores)
    parts = np.array_split(x, cores)
    pool = ThreadPoolExecutor(cores)

    def side_by_side():
        for f in [pool.submit(s.run, None, {name: p}) for s, p in zip(ones, parts)]:
            f.result()
    out = {"batch": batch, "cores": cores,
           "one_thread": images_per_second(lambda: ones[0].run(None, {name: x}), batch, seconds),
           f"{cores}_threads": images_per_second(lambda: full.run(None, {name: x}), batch, seconds),
           "side_by_side": images_per_second(side_by_side, batch, seconds)}
    pool.shutdown()
    return out


def methods(clfs: dict, images: list, budget: int, ov_python: str | None) -> dict:
    """Seconds per image of DE-CAM and RISE per backend (and OpenVINO XAI's RISE), image by image."""
    from blackbox_cam import explain_image
    rows: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    queries: dict[str, list[int]] = {}
    ov_version = None
    for name, image in images:
        ref = next(iter(clfs.values()))
        x = ref.prepare(image)
        target = int(np.argmax(ref.probabilities(x[None])[0]))
        for b, c in clfs.items():
            for method in ("decam", "rise"):
                t0, c0 = time.perf_counter(), time.process_time()
                explain_image(c, image, method, target=target, budget=budget, seed=0)
                rows.setdefault(f"{method} {b}", []).append(time.perf_counter() - t0)
                cpu.setdefault(f"{method} {b}", []).append(time.process_time() - c0)
                print(f"{name} {method} {b}: {rows[f'{method} {b}'][-1]:.2f} s, "
                      f"{cpu[f'{method} {b}'][-1]:.2f} CPU-s", flush=True)
        if ov_python:
            sys.path.insert(0, str(ROOT / "bench"))
            import ov_xai
            for method, pinning in (("ov-rise", False), ("ov-rise", True), ("ov-aise", False)):
                key = f"ov-xai {method[3:]}" + (" pinned" if pinning else "")
                got = ov_xai.explain(ov_python, MODEL, x[None], [target], [budget], softmax=not ref.outputs_probabilities,
                                     methods=(method,), pinning=pinning)[(method, budget)]
                queries.setdefault(key, []).append(int(got["queries"][0]))
                rows.setdefault(key, []).append(got["seconds"][0])
                cpu.setdefault(key, []).append(got["cpu_seconds"][0])
                ov_version = got["openvino"]
                print(f"{name} {key}: {rows[key][-1]:.2f} s, {cpu[key][-1]:.2f} CPU-s", flush=True)
    return {"seconds": rows, "cpu_seconds": cpu, "ov_xai_queries": queries, "ov_xai_openvino": ov_version}


def sweep(batches: list[int], rounds: int, seconds: float) -> list[dict]:
    """Raw images/s of OpenVINO configurations and ONNX Runtime at each batch, interleaved."""
    import openvino as ov

    from blackbox_cam.model.backends import compile_model
    core = ov.Core()
    payload = MODEL.read_bytes()
    configs = {f"openvino {hint.lower()}{'' if pin else ' no-pin'}": {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": hint, "ENABLE_CPU_PINNING": pin}
        for hint in ("LATENCY", "THROUGHPUT") for pin in (True, False)}
    compiled = {k: core.compile_model(core.read_model(payload), "CPU", v) for k, v in configs.items()}
    ort = compile_model(MODEL, "onnxruntime", "cpu")
    rows = []
    for n in batches:
        x = np.random.default_rng(0).normal(size=(n, 3, 224, 224)).astype(np.float32)
        runs = {"onnxruntime": lambda: ort.run(["logits"], {"image": x})}
        for k, c in compiled.items():
            streams = int(c.get_property("NUM_STREAMS"))
            if streams == 1:
                req = c.create_infer_request()
                runs[k] = lambda req=req: req.infer({0: x}, share_inputs=True)
            else:  # one asynchronous request per stream, the batch split between them
                queue = ov.AsyncInferQueue(c, streams)
                parts = [p for p in np.array_split(x, streams) if len(p)]

                def run_async(queue=queue, parts=parts):
                    for p in parts:
                        queue.start_async({0: p}, share_inputs=True)
                    queue.wait_all()
                runs[k] = run_async
        got: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(rounds):
            for k, fn in runs.items():
                got[k].append(images_per_second(fn, n, seconds, cpu[k]))
        for k, v in got.items():
            rows.append({"config": k, "batch": n, "images_per_s": statistics.median(v), "rounds": v,
                         "images_per_cpu_s": statistics.median(cpu[k])})
        print(n, {k: (round(statistics.median(v), 1), round(statistics.median(cpu[k]), 1)) for k, v in got.items()},
              flush=True)
    return rows


# -- report ----------------------------------------------------------------------------------------
def machine() -> str:
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
            f"load average {load} (1/5/15 min)")


def report(raw_rates: dict, meth: dict, ceil: dict, clfs: dict, budget: int, before: str, after: str) -> str:
    lines = ["# Backends on this CPU", "", f"Machine at start: {before}; at the end: {after}.", "",
             "| backend | automatic batch | raw images/s (median) | vs onnxruntime |", "|---|---|---|---|"]
    ref = raw_rates.get("onnxruntime")
    for b, v in raw_rates.items():
        ratio = statistics.median(x / y for x, y in zip(v, ref)) if ref else float("nan")
        lines.append(f"| {clfs[b].session.describe()} | {clfs[b].batch_size} | {statistics.median(v):.1f} | {ratio:.2f}x |")
    lines += ["", f"| method @ {budget} queries | seconds / image (median) | mean | CPU-seconds / image (median) |",
              "|---|---|---|---|"]
    secs, cpu = meth["seconds"], meth["cpu_seconds"]
    for k, v in secs.items():
        if k.startswith("ov-xai"):
            q = statistics.median(meth["ov_xai_queries"][k])
            label = (f"OpenVINO XAI {k.split()[1].upper()} (openvino {meth['ov_xai_openvino']}, "
                     f"{'its default: threads pinned' if k.endswith('pinned') else 'pinning off, as ours'}; "
                     f"{q:.0f} queries counted)")
        else:
            label = k
        lines.append(f"| {label} | {statistics.median(v):.2f} | {statistics.mean(v):.2f} | {statistics.median(cpu[k]):.2f} |")
    if "ov-xai rise" in secs:
        lines.append("")
        ov = statistics.median(secs["ov-xai rise"])
        top = max(v for k, v in ceil.items() if k not in ("batch", "cores"))
        lines += [f"The model alone on this CPU, batch {ceil['batch']}: {ceil['one_thread']:.1f} images/s on one "
                  f"thread, {ceil[str(ceil['cores']) + '_threads']:.1f} on one {ceil['cores']}-thread session, "
                  f"{ceil['side_by_side']:.1f} with one single-threaded session per core side by side. "
                  f"DE-CAM at {budget} queries in 0.6x OpenVINO XAI RISE's {ov:.1f} s would need "
                  f"{budget / (0.6 * ov):.0f} images/s from the model alone, "
                  f"{budget / (0.6 * ov) / top:.2f}x the best measured here.", ""]
        for b in clfs:
            wall = statistics.median(d / r for d, r in zip(secs[f"decam {b}"], secs["ov-xai rise"]))
            work = statistics.median(d / r for d, r in zip(cpu[f"decam {b}"], cpu["ov-xai rise"]))
            lines.append(f"Goal ratio DE-CAM ({b}) / OpenVINO XAI RISE (pinning off) at {budget}: {wall:.2f} wall time, "
                         f"{work:.2f} CPU time (per-image medians; goal <= 0.6)  ")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--images", type=int, default=4, help="bundled images for the method timings")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.5, help="per raw measurement")
    ap.add_argument("--ov-python", default=None, help="python of an environment with openvino-xai")
    ap.add_argument("--sweep", action="store_true", help="the OpenVINO settings study instead")
    ap.add_argument("--batches", default="1,2,4,8,16,32")
    a = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    before = machine()
    print(before, flush=True)
    if a.sweep:
        rows = sweep([int(b) for b in a.batches.split(",")], a.rounds, a.seconds)
        after = machine()
        configs = list(dict.fromkeys(r["config"] for r in rows))
        md = ["# OpenVINO settings on this CPU", "",
              "Raw images/s (wall) and, in brackets, images per CPU-second of the process; medians of "
              "interleaved rounds.", "",
              f"Machine at start: {before}; at the end: {after}.", "",
              "| batch | " + " | ".join(configs) + " |", "|---" * (len(configs) + 1) + "|"]
        for n in dict.fromkeys(r["batch"] for r in rows):
            md.append(f"| {n} | " + " | ".join(f"{r['images_per_s']:.1f} ({r['images_per_cpu_s']:.1f})"
                                                for c in configs for r in rows
                                                if r["batch"] == n and r["config"] == c) + " |")
        (RESULTS / "backends_sweep.md").write_text("\n".join(md) + "\n")
        (RESULTS / "backends_sweep.json").write_text(json.dumps({"machine": [before, after], "rows": rows}, indent=1))
        print("\n".join(md))
        return
    from blackbox_cam import Classifier, load_image
    from blackbox_cam.model.backends import BACKENDS
    clfs = {b: Classifier(MODEL, backend=b, device="cpu") for b, cls in BACKENDS.items() if cls.available()}
    rates = raw(clfs, a.rounds, a.seconds)
    imgs = [(n, load_image(ROOT / "models" / "images" / n)) for n in IMAGES[:a.images]]
    for c in clfs.values():  # compile the Numba kernels before anything is timed
        from blackbox_cam import explain_image
        explain_image(c, imgs[0][1], "decam", budget=50)
        explain_image(c, imgs[0][1], "rise", budget=50)
    meth = methods(clfs, imgs, a.budget, a.ov_python)
    ceil = ceiling(a.seconds * 2)
    print("ceiling", ceil, flush=True)
    after = machine()
    md = report(rates, meth, ceil, clfs, a.budget, before, after)
    (RESULTS / "backends.md").write_text(md)
    (RESULTS / "backends.json").write_text(json.dumps({"machine": [before, after], "raw": rates, **meth, "ceiling": ceil,
                                                       "batch": {b: c.batch_size for b, c in clfs.items()}}, indent=1))
    print(md)


if __name__ == "__main__":
    main(sys.argv[1:])
