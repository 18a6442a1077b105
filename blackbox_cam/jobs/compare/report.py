"""Writing a comparison to disk: panels, ``compare.json``, ``compare.csv`` and ``index.html``.

Every file is written atomically through :mod:`blackbox_cam.io.output` (a temporary file in the
same folder, then ``os.replace``), so an interrupted run never leaves a half-written report. The HTML page is
self-contained (inline CSS, no scripts, no network) and refers to the panels by relative paths.
"""
from __future__ import annotations

import csv
import html
import io
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


from .job import METRICS, CompareResult, ImageResult, summarise
from .panels import make_panel
from ...io.output import ensure_dir, json_text, write_png, write_text

PANEL_DIR = "panels"


# -- formatting ------------------------------------------------------------------------------------
def _fmt(v: Any, key: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if key == "queries":
        return f"{v:.0f}"
    if key in ("seconds", "metric_seconds"):
        return f"{v:.2f}"
    if isinstance(v, float):
        return f"{0.0 if abs(v) < 5e-4 else v:.3f}"
    return str(v)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def _higher(key: str) -> bool | None:
    if key in METRICS:
        return METRICS[key]["higher"]
    if key.startswith(("spearman_vs_", "iou_vs_")):
        return True
    return None


def _label(key: str) -> str:
    if key in METRICS:
        return METRICS[key]["label"]
    if key.startswith("spearman_vs_"):
        return f"Spearman vs {key[len('spearman_vs_'):]}"
    if key.startswith("iou_vs_"):
        return f"Top-k IoU vs {key[len('iou_vs_'):]}"
    return key


# -- tables -------------------------------------------------------------------------------------------
def write_csv(path: str | os.PathLike, result: CompareResult) -> Path:
    lead = ["image", "method", "target", "label", "target_probability"]
    if result.settings.get("task") == "detector":  # one row per (image, detection, method)
        lead = ["image", "detection", "box", "label", "class", "method", "target_probability"]
    keys = lead + result.metric_keys + ["metric_seconds"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys)
    for r in result.rows:
        w.writerow([_fmt_csv(r.get(k)) for k in keys])
    write_text(path, buf.getvalue())
    return Path(path)


def _fmt_csv(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return repr(round(v, 6))
    if isinstance(v, (list, tuple)):  # a box: x0 y0 x1 y1, one cell
        return " ".join(f"{x:g}" for x in v)
    return str(v)


def write_json(path: str | os.PathLike, result: CompareResult, summary: dict) -> Path:
    doc = {
        "settings": result.settings,
        "interval": "95% Student-t interval of the mean over images (lo/hi null for n < 2)",
        "summary": summary,
        "rows": result.rows,
        "failures": result.failures,
        "skipped": result.skipped,
    }
    write_text(path, json_text(doc))
    return Path(path)


# -- HTML ---------------------------------------------------------------------------------------------
CSS = """
body{font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
  color:#1f2328;background:#f6f8fa;margin:0}
main{max-width:1280px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a;margin:0 0 16px}
.meta{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:6px 20px;background:#fff;
  border:1px solid #d0d7de;border-radius:8px;padding:12px 16px;margin-bottom:8px}
.meta div{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}.meta b{color:#57606a;font-weight:600}
table{border-collapse:collapse;background:#fff;border:1px solid #d0d7de;border-radius:8px;overflow:hidden;
  font-variant-numeric:tabular-nums;margin:8px 0}
th,td{padding:6px 10px;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap}
th{background:#f0f3f6;font-weight:600;vertical-align:bottom}
td:first-child,th:first-child,td.l{text-align:left}
tr:last-child td{border-bottom:none}
td.best{font-weight:700;color:#0a6b2d}
.ci{color:#6e7781;font-size:12px}
.dir{color:#6e7781;font-weight:400;font-size:12px}
figure{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px;margin:16px 0}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#57606a;margin-top:8px}
.fail{background:#fff8c5;border:1px solid #d4a72c;border-radius:8px;padding:8px 16px}
.note{color:#57606a;font-size:13px}
"""


def _summary_table(result: CompareResult, summary: dict) -> str:
    keys = result.metric_keys
    best: dict[str, float] = {}
    for k in keys:
        hi = _higher(k)
        vals = [summary[m][k]["mean"] for m in result.methods if summary[m][k]["mean"] is not None]
        if hi is not None and len(vals) > 1 and k not in ("queries", "seconds") \
                and not k.startswith(("spearman_vs_", "iou_vs_")):
            best[k] = max(vals) if hi else min(vals)
    head = "".join(f"<th>{html.escape(_label(k))}<br><span class=dir>{_arrow(k)}</span></th>" for k in keys)
    body = []
    for m in result.methods:
        n = max((summary[m][k]["n"] for k in keys), default=0)
        cells = []
        for k in keys:
            s = summary[m][k]
            if s["mean"] is None:
                cells.append("<td></td>")
                continue
            cls = " class=best" if k in best and math.isclose(s["mean"], best[k], rel_tol=1e-12, abs_tol=1e-12) else ""
            ci = (f"<br><span class=ci>[{_fmt(s['lo'], k)}, {_fmt(s['hi'], k)}]</span>"
                  if s["lo"] is not None else "")
            cells.append(f"<td{cls}>{_fmt(s['mean'], k)}{ci}</td>")
        tag = " <span class=dir>(reference)</span>" if m == result.reference else ""
        body.append(f"<tr><td>{html.escape(m)}{tag}</td><td>{n}</td>{''.join(cells)}</tr>")
    unit = "Detections" if result.settings.get("task") == "detector" else "Images"
    return (f"<table><thead><tr><th>Method</th><th>{unit}</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _arrow(k: str) -> str:
    hi = _higher(k)
    return "" if hi is None else ("higher is better" if hi else "lower is better")


def _image_table(result: CompareResult, ir: ImageResult) -> str:
    keys = [k for k in result.metric_keys]
    rows = ir.rows_of(result.rows)
    head = "".join(f"<th>{html.escape(_label(k))}</th>" for k in keys)
    body = "".join(
        f"<tr><td>{html.escape(r['method'])}</td>" + "".join(f"<td>{_fmt(r.get(k), k)}</td>" for k in keys) + "</tr>"
        for r in rows)
    return f"<table><thead><tr><th>Method</th>{head}</tr></thead><tbody>{body}</tbody></table>"


def _key(ir: ImageResult) -> str:
    return ir.name if ir.detection is None else f"{ir.name}#{ir.detection}"


def render_html(result: CompareResult, summary: dict, panels: dict[str, str]) -> str:
    s = result.settings
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = [("Model", Path(s.get("model", "")).name or "?"),
            ("Input", "x".join(map(str, s.get("input_size", []))) + f", {s.get('num_classes')} classes"),
            ("Methods", ", ".join(result.methods)),
            ("Reference map", result.reference or "none"),
            ("Target", s.get("target")),
            ("Budget", s.get("budget") if s.get("budget") is not None else "method defaults"),
            ("Seed", s.get("seed")),
            ("Backend", (f"{s['backend'].get('name')} {s['backend'].get('version')} on {str(s['backend'].get('device')).upper()}"
                         if isinstance(s.get("backend"), dict) else "?")),
            ("Images", f"{len({ir.name for ir in result.images})} scored, {len({f['image'] for f in result.failures if not f['method']})} failed"),
            ("Created", when)]
    meta_html = "".join(f"<div><b>{html.escape(k)}</b> {html.escape(str(v))}</div>" for k, v in meta)
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        f"<title>blackbox-cam comparison: {html.escape(', '.join(result.methods))}</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>Saliency method comparison</h1>",
        f"<p class=sub>{html.escape(', '.join(result.methods))} on {len({ir.name for ir in result.images})} image(s), "
        + ("each detection explained and scored on its own (D-RISE similarity, its box). "
           if s.get("task") == "detector" else "same target per image. ") + "Files: <a href=compare.csv>compare.csv</a>, <a href=compare.json>compare.json</a>.</p>",
        f"<div class=meta>{meta_html}</div>",
        "<h2>Summary</h2>",
        _summary_table(result, summary),
        "<p class=note>Mean over images with a 95% Student-t interval of the mean in brackets (none for a single "
        "image); best mean per faithfulness column in bold. Deletion/insertion: RISE protocol (Petsiuk et al. 2018), "
        + ("the detection's D-RISE similarity (Petsiuk et al. 2021) as the score" if s.get("task") == "detector"
           else "target softmax probability") + ", normalised AUC. ROAD: noisy linear imputation, (LeRF &minus; MoRF)/2 over "
        f"10&ndash;90% removal (Rong et al. 2022). Agreement: Spearman rank correlation and IoU of the top "
        f"{s.get('topk'):g}% pixels against the reference map. "
        + (f"Pointing game: is the map's maximum within {s.get('tolerance'):g} px of the box; energy in box: "
           "share of the map's mass inside the box. " if s.get("boxes") else "")
        + "Queries and seconds are the method's own (metrics excluded).</p>",
    ]
    if result.failures:
        items = "".join(f"<li><b>{html.escape(f['image'])}</b>{' / ' + html.escape(f['method']) if f['method'] else ''}: "
                        f"{html.escape(f['error'])}</li>" for f in result.failures)
        parts.append(f"<h2>Failures</h2><div class=fail><ul>{items}</ul></div>")
    parts.append("<h2>Images</h2>")
    for ir in result.images:
        src = panels.get(_key(ir))
        parts.append("<figure>")
        if src:
            parts.append(f"<img src='{html.escape(src, quote=True)}' alt='{html.escape(ir.name, quote=True)} "
                         "and each method&#39;s saliency overlay'>")
        if ir.detection is not None:
            row = next(iter(ir.rows_of(result.rows)), {})
            box = ", ".join(f"{v:.0f}" for v in row.get("box", ir.box))
            parts.append(f"<figcaption><b>{html.escape(ir.name)}</b>, detection {ir.detection}: "
                         f"{html.escape(ir.label or '')} (class {ir.target}, score {_fmt(row.get('target_probability'))}) "
                         f"in box [{box}] (file pixels, green); each map scored with this detection's D-RISE "
                         "similarity.</figcaption>")
        else:
            parts.append(f"<figcaption><b>{html.escape(ir.name)}</b>: target {ir.target} "
                         f"({html.escape(ir.label or '')}).</figcaption>")
        parts.append(_image_table(result, ir))
        parts.append("</figure>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def write_report(result: CompareResult, out: str | os.PathLike) -> dict[str, Any]:
    """Write panels, ``compare.json``, ``compare.csv`` and ``index.html`` under ``out``.

    Returns ``{"panels": [...], "json": path, "csv": path, "html": path, "summary": summary}``.
    """
    out = ensure_dir(out)
    ensure_dir(out / PANEL_DIR)
    summary = summarise(result)
    panels: dict[str, str] = {}
    written = []
    for ir in result.images:
        if ir.image is None or not ir.maps:
            continue
        rel = f"{PANEL_DIR}/{_slug(Path(ir.name).stem)}.png"
        if ir.detection is not None:
            rel = f"{PANEL_DIR}/{_slug(Path(ir.name).stem)}_det{ir.detection}.png"
        if rel in panels.values():
            rel = f"{PANEL_DIR}/{_slug(ir.name)}.png"
        write_png(out / rel, make_panel(ir, result))
        written.append(out / rel)
        panels[_key(ir)] = rel
    j = write_json(out / "compare.json", result, summary)
    c = write_csv(out / "compare.csv", result)
    h = out / "index.html"
    write_text(h, render_html(result, summary, panels))
    return {"panels": written, "json": j, "csv": c, "html": h, "summary": summary}
