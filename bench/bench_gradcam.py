"""Grad-CAM speed, as ratios measured in one run on one machine (not a test).

    python bench/bench_gradcam.py [--model models/efficientnet_lite0.onnx] [--batch 8]

Prints, per image of a batch of ``--batch`` images:
  forward       one ONNX Runtime forward pass of the batch (the classifier's own session)
  gradcam       Grad-CAM at the default layer: gradient-model run + numpy CAM + upsampling
                (goal: <= 1.3x forward)
  all blocks    Grad-CAM for every block output in one run, formula emitted into the graph,
                maps upsampled (goal: <= 6x forward)
  torch         pytorch-grad-cam's GradCAM (or plain autograd hooks if it is not installed) on
                the torch EfficientNet-Lite0 the ONNX file was exported from, same threads
                (goal: ours >= 10x faster); only for EfficientNet-Lite0 with torch installed.
Times are medians over ``--repeat`` rounds (see :func:`timed`); ORT uses ``--ort-threads``
(default: ORT's, the physical cores) in the forward and gradient sessions, torch ``--threads``.
On shared cores the ratios move with the load: run it twice, and with ``--ort-threads 1``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fns: dict, repeat: int) -> dict:
    """Median seconds per call of each function over ``repeat`` rounds. Each round calls every
    function once untimed, then twice timed: rounds spread the load from other processes on the
    shared cores over all functions, and the untimed call lets the previous function's thread
    pool (ORT and OpenMP threads spin after a run) go quiet before timing."""
    times: dict = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            fn()
            for _ in range(2):
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def torch_gradcam(x: np.ndarray, targets: np.ndarray, threads: int):
    """A callable running Grad-CAM in torch on EfficientNet-Lite0, or None if unavailable."""
    try:
        import torch
        sys.path.insert(0, str(ROOT / "tests" / "data" / "gradcam_reference"))
        import make_reference as mr
    except ImportError:
        return None, "torch not installed"
    torch.set_num_threads(threads)
    mr._stub_unused_imports()
    try:
        model, _ = mr.efficientnet_lite0()
    except ImportError as e:
        return None, f"efficientnet-lite-pytorch missing ({e})"
    xt = torch.from_numpy(x)
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam = GradCAM(model=model, target_layers=[model.head_act])
        tg = [ClassifierOutputTarget(int(t)) for t in targets]
        return (lambda: cam(input_tensor=xt, targets=tg)), "pytorch-grad-cam GradCAM"
    except ImportError:
        pass

    def hooks():
        store = {}
        h = model.head_act.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
        out = model(xt)
        h.remove()
        (g,) = torch.autograd.grad(out[torch.arange(len(targets)), torch.from_numpy(targets)].sum(), store["a"])
        w = g.mean((2, 3), keepdim=True)
        return torch.relu((w * store["a"]).sum(1)).detach().numpy()

    return hooks, "torch autograd hooks"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "efficientnet_lite0.onnx"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    ap.add_argument("--ort-threads", type=int, default=0, help="ORT intra-op threads (0: ORT's default)")
    args = ap.parse_args()

    import onnxruntime as ort

    from blackbox_cam.methods import gradcam as gc
    from blackbox_cam.model.runtime import Classifier, make_session

    clf = Classifier(args.model, device="cpu", batch_size=args.batch, backend="onnxruntime")  # ORT's threads
    if args.ort_threads:  # gradient sessions copy the classifier session's thread count
        clf.session = make_session(clf.model, "cpu", threads=args.ort_threads)
    rng = np.random.default_rng(0)
    h, w = clf.input_size
    x = np.stack([clf.prepare(rng.uniform(0, 255, (h, w, 3)).astype(np.float32)) for _ in range(args.batch)])
    targets = rng.integers(0, clf.num_classes, args.batch)

    # ORT sessions (forward and gradient) use ORT's default thread count (the physical cores)
    feed = {clf.input_name: clf.to_feed(x)}
    t0 = time.perf_counter()
    gc.compute_cams(clf, x[:1], targets[:1])
    build_one = time.perf_counter() - t0
    blocks = gc.block_outputs(gc.list_layers(clf))
    t0 = time.perf_counter()
    gc.layer_cams(clf, x[:1], targets[:1], layers=blocks)
    build_all = time.perf_counter() - t0
    fns = {"forward": lambda: clf.session.run([clf.output_name], feed),
           "gradcam": lambda: gc.compute_cams(clf, x, targets),
           "all": lambda: gc.layer_cams(clf, x, targets, layers=blocks)}
    t = timed(fns, args.repeat)
    torch_what = ""
    if Path(args.model).name == "efficientnet_lite0.onnx":
        # its own phase: torch's OpenMP threads and ORT's pools would slow each other down
        torch_fn, torch_what = torch_gradcam(x, targets, args.threads)
        if torch_fn is not None:
            t2 = timed({"torch": torch_fn, "gradcam": fns["gradcam"]}, max(2, args.repeat // 2))
            t["torch"], gradcam_again = t2["torch"], t2["gradcam"]
    forward, gradcam, all_blocks = t["forward"], t["gradcam"], t["all"]

    n = args.batch
    print(f"model {Path(args.model).name}, batch {n}, input {h}x{w}, ORT {args.ort_threads or 'default'} threads, torch {args.threads} threads, "
          f"{os.cpu_count()} CPU cores visible (shared), onnxruntime {ort.__version__} {clf.providers[0]}")
    print(f"  forward      {1e3 * forward / n:8.2f} ms/image")
    print(f"  gradcam      {1e3 * gradcam / n:8.2f} ms/image  = {gradcam / forward:5.2f}x forward (goal <= 1.3)"
          f"   [one-off gradient model + session build {build_one:.2f} s]")
    print(f"  all blocks   {1e3 * all_blocks / n:8.2f} ms/image  = {all_blocks / forward:5.2f}x forward (goal <= 6), "
          f"{len(blocks)} layers in one run   [one-off build {build_all:.2f} s]")
    if "torch" in t:
        print(f"  torch        {1e3 * t['torch'] / n:8.2f} ms/image  ({torch_what}): ours "
              f"({1e3 * gradcam_again / n:.2f} ms/image in the same phase) is "
              f"{t['torch'] / gradcam_again:5.2f}x faster (goal >= 10)")
    elif torch_what:
        print(f"  torch        skipped: {torch_what}")


if __name__ == "__main__":
    main()
