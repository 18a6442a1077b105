"""Files of a ``global`` run: the global maps (.npy + overlay .png), the contact sheet, PEPPR plots.

Maps are saved as float32 at the model input size (each label map sums to 1). Pictures show a
map over the label's mean image; the contact sheet puts every label's mean map (top) and
per-pixel std (below) side by side on one shared colour scale, in units of "times the uniform
density" (1 = a pixel gets exactly its share, 1 / (H x W), of the evidence), so labels compare
directly. Plots use matplotlib's object API (no display needed, and a notebook's inline backend is left
alone: :func:`blackbox_cam.pictures.display.figure`); every file is written atomically.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .maps import Aggregator
from ...io.output import write_bytes, write_json, write_npy, write_png
from ...pictures.display import figure, figure_png
from ...pictures.render import overlay

MIN_PNG_SIDE = 256


def _save(fig, path: Path) -> None:
    write_bytes(path, figure_png(fig, dpi=100))


def _picture(saliency: np.ndarray, image: np.ndarray | None) -> Image.Image:
    """The map scaled to its maximum over ``image`` (grey if none), at least 256 px on a side."""
    from ...io.images import resize, resize_map
    h, w = saliency.shape
    f = max(1, math.ceil(MIN_PNG_SIDE / min(h, w)))
    top = float(saliency.max())
    s = saliency / top if top > 0 else np.zeros_like(saliency)
    img = np.full((h, w, 3), 128.0, np.float32) if image is None else np.asarray(image, np.float32)
    return overlay(resize(img, (h * f, w * f)), resize_map(s.astype(np.float32), (h * f, w * f)))


def slug(name: str) -> str:
    """A label name as a file-name part: ``"tabby, tabby cat"`` -> ``tabby_tabby_cat``."""
    s = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").lower()
    return s[:60] or "label"


def file_stems(names: dict[int, str]) -> dict[int, str]:
    """``global_<label slug>`` per label; the index is added where two names give one slug."""
    slugs = {k: slug(n) for k, n in names.items()}
    counts: dict[str, int] = {}
    for s in slugs.values():
        counts[s] = counts.get(s, 0) + 1
    return {k: f"global_{s}" if counts[s] == 1 and s != "overall" else f"global_{k}_{s}" for k, s in slugs.items()}


def write_maps(agg: Aggregator, names: dict[int, str], out: Path) -> dict[str, Any]:
    """``global_<label>[_std].npy/.png``, ``global_overall.npy/.png`` and ``global_sheet.png``."""
    files: dict[str, Any] = {"labels": {}}
    for k, stem in file_stems(names).items():
        mean, std, img = agg.mean(k), agg.std(k), agg.mean_image(k)
        write_npy(out / f"{stem}.npy", mean.astype(np.float32))
        write_npy(out / f"{stem}_std.npy", std.astype(np.float32))
        write_png(out / f"{stem}.png", _picture(mean, img))
        write_png(out / f"{stem}_std.png", _picture(std, img))
        files["labels"][names[k]] = {"map": f"{stem}.npy", "std": f"{stem}_std.npy", "png": f"{stem}.png",
                                     "std_png": f"{stem}_std.png"}
    write_npy(out / "global_overall.npy", agg.overall().astype(np.float32))
    write_png(out / "global_overall.png", _picture(agg.overall(), agg.overall_image()))
    files["overall"] = {"map": "global_overall.npy", "png": "global_overall.png"}
    contact_sheet(agg, names, out / "global_sheet.png")
    files["sheet"] = "global_sheet.png"
    return files


def contact_sheet(agg: Aggregator, names: dict[int, str], path: Path, max_columns: int = 6) -> None:
    """Every label's mean map (row 1) and std (row 2), then the overall map, on shared scales."""
    h, w = agg.size
    units = h * w  # times the uniform density
    panels = [(f"{names[k]} (n={agg.count(k)})", agg.mean(k) * units, agg.std(k) * units, agg.mean_image(k))
              for k in agg.labels]
    panels.append((f"overall ({len(agg.labels)} labels)", agg.overall() * units, None, agg.overall_image()))
    vmax = max(float(p[1].max()) for p in panels) or 1.0
    smax = max((float(p[2].max()) for p in panels if p[2] is not None), default=1.0) or 1.0
    cols = min(max_columns, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = figure(2.6 * cols + 0.8, 5.0 * rows + 0.6)
    axes = fig.subplots(2 * rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    ims = []
    for i, (title, mean, std, img) in enumerate(panels):
        r, c = 2 * (i // cols), i % cols
        for ax, m, top, what in ((axes[r, c], mean, vmax, "mean"), (axes[r + 1, c], std, smax, "std")):
            if m is None:
                continue
            if img is not None:
                ax.imshow(np.clip(img / 255.0, 0, 1), interpolation="nearest")
            ims.append((ax.imshow(m, cmap="jet", alpha=0.6 if img is not None else 1.0, vmin=0, vmax=top,
                                  interpolation="nearest"), what))
            ax.set_title(f"{title}\n{what}", fontsize=9)
    fig.suptitle("Global maps (colour: times the uniform density; shared scale per row type)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 0.96))
    for what, top, y in (("mean", vmax, 0.55), ("std", smax, 0.08)):
        im = next((m for m, wh in ims if wh == what), None)
        if im is not None:
            cax = fig.add_axes((0.92, y, 0.015, 0.35))
            fig.colorbar(im, cax=cax).set_label(f"{what} x uniform", fontsize=8)
    _save(fig, path)


def write_peppr(peppr: dict[str, Any], out: Path) -> dict[str, str]:
    """``peppr.json`` (strict JSON) and ``peppr.png`` (the curves of every label and overall)."""
    _check_finite(peppr)
    write_json(out / "peppr.json", peppr)
    blocks = list(peppr["labels"].items()) + ([("overall", peppr["overall"])] if peppr.get("overall") else [])
    cols = min(4, len(blocks))
    rows = math.ceil(len(blocks) / cols)
    fig = figure(3.6 * cols, 3.2 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[len(blocks):]:
        ax.axis("off")
    for ax, (name, b) in zip(axes.ravel(), blocks):
        for key, style, label in (("erase", "-", "erase (global)"), ("erase_random", "--", "erase (random)"),
                                  ("restore", "-", "restore (global)"), ("restore_random", "--", "restore (random)")):
            a = np.asarray(b[key])
            ax.plot(a[:, 0], a[:, 1], style, color="tab:red" if key.startswith("erase") else "tab:blue",
                    label=label, lw=1.6)
        for key, color in (("erase", "tab:red"), ("restore", "tab:blue")):
            a = np.asarray(b["own_map"][key])
            ax.plot(a[:, 0], a[:, 1], ":", color=color, lw=1.2, label=f"{key} (own maps)")
        ax.set_title(f"{name} (n={b['n_images']}): PEPPR {b['peppr']:.2f}\nown maps {b['own_map']['peppr']:.2f}",
                     fontsize=9)
        ax.set_xlabel("fraction of pixels (most important first)", fontsize=8)
        ax.set_ylabel("mean target probability", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.tick_params(labelsize=7)
    axes.ravel()[0].legend(fontsize=6, loc="center right")
    fig.suptitle("PEPPR: progressive erasing (red) and restoration (blue); dashed = random ranking", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    _save(fig, out / "peppr.png")
    return {"peppr": "peppr.json", "peppr_png": "peppr.png"}


def _check_finite(obj: Any) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError("PEPPR produced a non-finite number")
    if isinstance(obj, dict):
        for v in obj.values():
            _check_finite(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_finite(v)
