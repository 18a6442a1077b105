"""ybROAD ("yellow brick ROAD", CAManim, Kaczmarek et al., PLoS One 2024): the ROAD score of every
frame of an animation as a table (CSV) and as a curve over depth (matplotlib), with its maximum
and mean marked.
"""
from __future__ import annotations

import csv
import io

import numpy as np

from ...pictures.movie import short_name

COLUMNS = ("index", "layer", "shape", "road", "morf", "lerf")
SEARCH_COLUMNS = ("generation", "queries", "best_fitness")


def ybroad_csv(anim) -> str:
    """One row per frame: ``index, layer, shape, road, morf, lerf`` (search frames add
    ``generation, queries, best_fitness``); ROAD columns are empty for frames without a score."""
    buf = io.StringIO()
    cols = COLUMNS + (SEARCH_COLUMNS if anim.kind == "search" else ())
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for f in anim.frames:
        r = f.road
        row = [f.index, f.name, f.shape_text(), *(("",) * 3 if r is None else
                                                (f"{r.combined:.6f}", f"{r.morf:.6f}", f"{r.lerf:.6f}"))]
        if anim.kind == "search":
            row += [f.info["generation"], f.info["queries"], f"{f.info['best_fitness']:.6f}"]
        w.writerow(row)
    return buf.getvalue()


def ybroad_plot(anim, *, dpi: int = 120) -> bytes:
    """PNG of ROAD (and its MoRF and LeRF parts) against frame index, ybROAD_max starred and
    ybROAD_mean as a dashed line."""
    from matplotlib.figure import Figure  # no pyplot, no backend switch: a notebook's inline plots stay on

    yb = anim.ybroad
    if yb is None:
        raise ValueError("the animation has no ROAD scores (run add_ybroad first)")
    idx = np.array([f.index for f in anim.frames])
    road = np.array([f.road.combined for f in anim.frames])
    morf = np.array([f.road.morf for f in anim.frames])
    lerf = np.array([f.road.lerf for f in anim.frames])
    fig = Figure(figsize=(10, 4.2), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0, color="0.8", lw=0.8)
    ax.plot(idx, morf, color="tab:red", lw=0.9, alpha=0.6, label="MoRF (change of p, most relevant removed)")
    ax.plot(idx, lerf, color="tab:green", lw=0.9, alpha=0.6, label="LeRF (change of p, least relevant removed)")
    ax.plot(idx, road, "o-", color="goldenrod", ms=3.5, lw=1.6, label="ROAD = (LeRF - MoRF) / 2")
    ax.axhline(yb["mean"], color="goldenrod", ls="--", lw=1.1, label=f"ybROAD_mean = {yb['mean']:+.3f}")
    ax.plot([yb["argmax"]], [yb["max"]], "*", color="black", ms=13,
            label=f"ybROAD_max = {yb['max']:+.3f} (frame {yb['argmax']})")
    what = "DE generation" if anim.kind == "search" else "layer (graph order)"
    ax.set_xlabel(what)
    ax.set_ylabel("target probability change")
    if anim.kind == "layers" and len(idx) <= 24:
        ax.set_xticks(idx, [f"{i} {short_name(f.name)}" for i, f in zip(idx, anim.frames)], rotation=60,
                      ha="right", fontsize=7)
    ax.set_title(f"ybROAD of {anim.method} for '{anim.label}' (p = {anim.score:.3f}), "
                 f"ROAD at 20/40/60/80 %, {len(idx)} frames", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.25)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
