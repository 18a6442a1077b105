"""CAManim speed in units of forward passes measured in the same run (not a test).

    python bench/bench_animate.py [--model models/efficientnet_lite0.onnx] [--image models/images/chelsea.png]
                                  [--layers blocks] [--repeat 3] [--no-road]

Prints, for one image:
  forward      one ONNX Runtime forward pass of that image (the classifier's own session)
  animation    the whole white-box animation without ROAD: prediction, one gradient run for all
               ``--layers`` (default: every block output), layer- and global-normalised maps of
               every frame at the model's size (goal: <= 8x forward; the gradient session is built
               once per model and layer set, reported apart as "one-off build")
  + image size the same plus both maps of every frame resized to the image (what the GIFs and
               --save-maps use; bilinear, as explain writes them)
  all 4-D      the same for every 4-D tensor `blackbox-cam layers` lists (the CLI default)
  render       drawing the frames and encoding both GIFs and both contact sheets (Pillow)
  ybROAD       ROAD at 20/40/60/80 % for every frame: queries, seconds and forward passes of time,
               split into imputation and scoring
Times are medians (see ``bench_gradcam.timed``). On shared cores the ratios move with the load.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_gradcam import timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "efficientnet_lite0.onnx"))
    ap.add_argument("--image", default=str(ROOT / "models" / "images" / "chelsea.png"))
    ap.add_argument("--layers", default="blocks")
    ap.add_argument("--method", default="gradcam")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-road", action="store_true")
    args = ap.parse_args()

    import onnxruntime as ort

    from blackbox_cam.jobs.animate import job as A
    from blackbox_cam.io.output import png_bytes
    from blackbox_cam.pictures import movie
    from blackbox_cam.io.images import load_image
    from blackbox_cam.metrics import road_images
    from blackbox_cam.model.runtime import Classifier

    clf = Classifier(args.model, device="cpu")
    image = load_image(args.image)
    x = clf.prepare(image)[None]
    t0 = time.perf_counter()
    anim = A.layer_frames(clf, image, args.method, layers=args.layers)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    every = A.layer_frames(clf, image, args.method, layers="all")
    build_all = time.perf_counter() - t0

    def render():
        for norm in ("layer", "global"):
            movie.gif_bytes(movie.pictures(anim, norm), 5)
            png_bytes(movie.contact_sheet(anim, norm), compress_level=3)

    def at_image_size():
        for f in A.layer_frames(clf, image, args.method, layers=args.layers).frames:
            f.layer_map, f.global_map

    t = timed({"forward": lambda: clf._run(x),
               "animation": lambda: A.layer_frames(clf, image, args.method, layers=args.layers),
               "image": at_image_size,
               "all": lambda: A.layer_frames(clf, image, args.method, layers="all")}, args.repeat)
    t0 = time.perf_counter()
    render()
    t_render = time.perf_counter() - t0
    fwd = t["forward"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"model {Path(args.model).name}, image {Path(args.image).name} {image.shape[1]}x{image.shape[0]}, "
          f"method {args.method}, onnxruntime {ort.__version__} {clf.providers[0]}, {os.cpu_count()} CPU cores "
          f"visible, load average {load:.1f} (shared machine: ratios move with the load)")
    print(f"  forward      {1e3 * fwd:8.1f} ms")
    print(f"  animation    {1e3 * t['animation']:8.1f} ms  = {t['animation'] / fwd:5.2f}x forward (goal <= 8), "
          f"{len(anim.frames)} frames ({args.layers}), both normalisations, no ROAD   [one-off build {build:.2f} s]")
    print(f"  + image size {1e3 * t['image']:8.1f} ms  = {t['image'] / fwd:5.2f}x forward, "
          f"{image.shape[1]}x{image.shape[0]} maps")
    print(f"  all 4-D      {1e3 * t['all']:8.1f} ms  = {t['all'] / fwd:5.2f}x forward, {len(every.frames)} frames "
          f"[one-off build {build_all:.2f} s]")
    print(f"  render       {1e3 * t_render:8.1f} ms  = {t_render / fwd:5.1f}x forward: 2 GIFs + 2 contact sheets "
          f"of {len(anim.frames)} frames")
    if args.no_road:
        return
    t0 = time.perf_counter()
    for f in anim.frames:
        road_images(anim.x, f.model_map, fractions=A.YBROAD_FRACTIONS)
    t_impute = time.perf_counter() - t0
    q0 = clf.queries
    t0 = time.perf_counter()
    A.add_ybroad(clf, anim)
    t_road = time.perf_counter() - t0
    q = clf.queries - q0
    print(f"  ybROAD       {t_road:8.2f} s   = {t_road / fwd:5.0f}x forward, {q} queries (1 + 8 x {len(anim.frames)}); "
          f"imputation alone {t_impute:.2f} s ({100 * t_impute / t_road:.0f} %), "
          f"ybROAD max {anim.ybroad['max']:+.3f} at frame {anim.ybroad['argmax']}, mean {anim.ybroad['mean']:+.3f}")


if __name__ == "__main__":
    main()
