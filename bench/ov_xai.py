"""OpenVINO XAI's black-box RISE and AISE on the same .onnx, run in OpenVINO's own environment.

``openvino-xai`` needs numpy < 2, so it usually lives in its own virtual environment. The bench
scripts call :func:`explain` with that environment's python; it writes the model-space inputs to a
job file and runs this file there as a worker (``python bench/ov_xai.py JOB.npz``, which imports
only numpy and openvino), then reads the maps, wall times and query counts back. Scoring stays in
the caller, with the same metrics as our methods.

Query counting wraps the explainer's ``model_forward`` and counts the images it is given. AISE's
budget is its iteration count: it costs 2 queries (mask kept, mask removed) per DIRECT evaluation,
``num_iterations_per_kernel`` evaluations for each of its 3 default kernel widths, so 6 queries per
iteration (:func:`aise_kwargs`); the counted queries are recorded, not assumed.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("ov-rise", "ov-aise")


def aise_kwargs(budget: int) -> dict:
    """AISE arguments for about ``budget`` queries (6 per iteration, see the module docstring)."""
    return {"num_iterations_per_kernel": max(1, budget // 6)}


def _postprocess(softmax: bool):
    def post(output):
        z = np.asarray(output[0] if not hasattr(output, "values") else list(output.values())[0], dtype=np.float64)
        if not softmax:
            return z
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    return post


def worker(job_path: str) -> None:
    """Explain every input of ``job.npz`` with OpenVINO XAI; write ``ov_out.npz`` beside it."""
    import openvino as ov
    import openvino_xai as xai
    from openvino_xai.explainer.explainer import ExplainMode

    job = np.load(job_path)
    spec = json.loads(str(job["spec"]))
    if not spec.get("pinning", True):  # its Explainer compiles with a Core of its own: add the setting there
        compile_model = ov.Core.compile_model

        def unpinned(self, model, device_name="CPU", config=None, **kw):
            return compile_model(self, model, device_name, {**(config or {}), "ENABLE_CPU_PINNING": False}, **kw)
        ov.Core.compile_model = unpinned
    model = ov.Core().read_model(spec["model"])
    xs, targets = job["x"], job["targets"]               # (N, 3, H, W) model space, (N,)
    out: dict[str, np.ndarray] = {}
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    queries: dict[str, list[int]] = {}
    for method in spec["methods"]:
        mode = xai.Method.RISE if method == "ov-rise" else xai.Method.AISE
        explainer = xai.Explainer(model=model, task=xai.Task.CLASSIFICATION,
                                  preprocess_fn=lambda img: img,                 # inputs are model space already
                                  postprocess_fn=_postprocess(spec["softmax"]),
                                  explain_mode=ExplainMode.BLACKBOX, explain_method=mode)
        count = [0]
        forward = explainer.method.model_forward

        def counted(x, preprocess=True, _f=forward):
            count[0] += int(np.asarray(x).shape[0])
            return _f(x, preprocess)
        explainer.method.model_forward = counted
        for budget in spec["budgets"]:
            key = f"{method}@{budget}"
            maps, times[key], cpu[key], queries[key] = [], [], [], []
            for x, t in zip(xs, targets):
                kw = {"num_masks": int(budget)} if method == "ov-rise" else aise_kwargs(int(budget))
                count[0] = 0
                t0, c0 = time.perf_counter(), time.process_time()
                e = explainer(x[None], targets=[int(t)], overlay=False, resize=False, colormap=False, **kw)
                times[key].append(time.perf_counter() - t0)
                cpu[key].append(time.process_time() - c0)
                queries[key].append(count[0])
                maps.append(np.asarray(next(iter(e.saliency_map.values())), dtype=np.float32))
            out[key] = np.stack(maps)
    np.savez(Path(job_path).with_name("ov_out.npz"), times=json.dumps(times), queries=json.dumps(queries),
             cpu=json.dumps(cpu), openvino=ov.__version__.split("-")[0], **out)


def explain(ov_python: str, model: str | Path, xs: np.ndarray, targets, budgets, *, softmax: bool,
            methods=METHODS, pinning: bool = True) -> dict[tuple[str, int], dict]:
    """Run OpenVINO XAI on model-space inputs ``xs`` (N, 3, H, W) in ``ov_python``'s environment.

    Returns ``{(method, budget): {"maps": (N, h, w) float32 (OpenVINO's resolution), "seconds":
    [N], "cpu_seconds": [N], "queries": [N], "openvino": version}}``; raises RuntimeError with the
    worker's stderr tail when it fails. ``pinning=False`` compiles its model with CPU pinning off
    (its default pins threads to cores, which stalls on a machine other processes share).
    """
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.npz"
        spec = {"model": str(model), "methods": list(methods), "budgets": [int(b) for b in budgets],
                "softmax": bool(softmax), "pinning": bool(pinning)}
        np.savez(job, x=np.asarray(xs, np.float32), targets=np.asarray(targets), spec=json.dumps(spec))
        r = subprocess.run([ov_python, str(Path(__file__).resolve()), str(job)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"OpenVINO XAI worker failed ({r.returncode}):\n{r.stderr[-3000:]}")
        res = np.load(Path(tmp) / "ov_out.npz")
        times, queries = json.loads(str(res["times"])), json.loads(str(res["queries"]))
        cpu = json.loads(str(res["cpu"]))
        out = {}
        for key in times:
            method, budget = key.split("@")
            out[(method, int(budget))] = {"maps": np.asarray(res[key]), "seconds": times[key],
                                          "cpu_seconds": cpu[key], "queries": queries[key],
                                          "openvino": str(res["openvino"])}
        return out


if __name__ == "__main__":
    worker(sys.argv[1])
