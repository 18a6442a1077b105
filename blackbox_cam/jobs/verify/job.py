"""Compare the model's scores under blackbox-cam's preprocessing with the vendor's own scores.

The measure is the **log-odds gap** of the explained class, ``|logit(p_ours) - logit(p_vendor)|``
with ``logit(p) = log(p / (1 - p))``: a gap of 0.05 is a 5 % change in the odds, whatever the
probability (0.0001 and 0.9999 are as sensitive as 0.5). For raw scores given one class at a
time (``logit`` column) the gap is the difference of the raw scores. The explained class is
the vendor's top-1 for whole score rows, the given class otherwise.

When the gap is above the tolerance, the usual suspects are tried one at a time (channel
order, mean order, 0..1 vs 0..255, squash / crop / letterbox, ``crop_pct`` 0.875 vs 1, the JPEG
round trip, the padding colour, the filter, 8-bit resizing, the presets) and the single change
that closes the gap is named, in sidecar keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ...io.images import load_image
from ...model.geometry import FILTER_NAMES, FILTERS, Geometry
from ...model.preprocess import PRESETS, Preprocessing
from .expected import Expected

MAX_SUSPECT_IMAGES = 32  # suspects are scored on the images with the largest gaps


def log_odds(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-15, 1 - 1e-15)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Suspect:
    """One changed step: ``change`` says it in sidecar keys."""

    change: str
    preprocessing: Preprocessing
    geometry: Geometry


@dataclass
class Report:
    rows: list[dict[str, Any]]
    tolerance: float
    max_gap: float
    worst: str
    top1_agree: int
    top1_known: int
    suggestion: tuple[str, float] | None = None   # (change, max gap with it)
    closest: tuple[str, float] | None = None      # the best single change when none passes
    tried: list[tuple[str, float]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.max_gap <= self.tolerance and self.top1_agree == self.top1_known


def _compare(clf, e: Expected, raw: np.ndarray) -> dict[str, Any]:
    """One image: the explained class, both sides' values, the gap and both top-1 classes."""
    ours_p = clf.as_probabilities(raw[None])[0]
    vals = np.asarray(e.values, np.float64)
    top_ours = int(np.argmax(ours_p))
    if e.kind == "row":   # the vendor's whole raw row: its softmax, like the model's own
        z = vals - vals.max()
        theirs_p = np.exp(z) / np.exp(z).sum()
        c = int(np.argmax(theirs_p))
        return _row(e, c, float(theirs_p[c]), float(ours_p[c]), abs(float(log_odds(ours_p[c]) - log_odds(theirs_p[c]))),
                    c, top_ours)
    if e.kind == "logit":
        def raw_of(c: int) -> float:
            return float(raw[0] if c == 1 else -raw[0]) if clf.binary else float(raw[c])
        gaps = [abs(raw_of(c) - v) for c, v in zip(e.classes, vals)]
        i = int(np.argmax(gaps))
        top = e.classes[int(np.argmax(vals))] if len(e.classes) == clf.num_classes else None
        return _row(e, e.classes[i], float(vals[i]), raw_of(e.classes[i]), gaps[i], top, top_ours)
    gaps = [abs(float(log_odds(ours_p[c]) - log_odds(v))) for c, v in zip(e.classes, vals)]
    i = int(np.argmax(gaps))
    if len(e.classes) == clf.num_classes:
        top = e.classes[int(np.argmax(vals))]
    elif clf.num_classes == 2 and len(e.classes) == 1:
        top = e.classes[0] if vals[0] > 0.5 else 1 - e.classes[0]
    else:
        top = None
    return _row(e, e.classes[i], float(vals[i]), float(ours_p[e.classes[i]]), gaps[i], top, top_ours)


def _row(e: Expected, c: int, theirs: float, ours: float, gap: float, top_theirs, top_ours) -> dict[str, Any]:
    return {"image": e.name, "class": c, "expected": theirs, "ours": ours, "gap": gap,
            "top1_expected": top_theirs, "top1_ours": top_ours,
            "agree": None if top_theirs is None else top_theirs == top_ours}


def _score_all(clf, images: list[np.ndarray], pp: Preprocessing, geo: Geometry) -> np.ndarray:
    if getattr(clf, "preprocess_fn", None) is not None:  # the vendor's function: each image at its own size
        return np.concatenate([clf.scores(clf.prepare(im)[None]) for im in images])
    old = clf.preprocessing, clf.geometry
    clf.preprocessing, clf.geometry = pp, geo
    try:
        return clf.scores(np.stack([clf.prepare(im) for im in images]))
    finally:
        clf.preprocessing, clf.geometry = old


def suspects(pp: Preprocessing, geo: Geometry, vocabulary: str = "ours",
             input_hw: tuple[int, int] = (224, 224)) -> list[Suspect]:
    """The usual single-step mistakes, each as the pipeline with that one step changed, said in
    the sidecar's own vocabulary (``ours``, ``huggingface`` or ``timm``)."""
    hf, timm = vocabulary == "huggingface", vocabulary == "timm"
    out: list[Suspect] = []
    add = lambda change, p=pp, g=geo: out.append(Suspect(change, p, g))  # noqa: E731
    flip = str(not pp.bgr).lower()
    if hf:
        add(f'"do_flip_channel_order": {flip} (channel order; image_mean stays RGB)',
            replace(pp, bgr=not pp.bgr, mean=pp.mean[::-1], std=pp.std[::-1]))
        add(f'"do_flip_channel_order": {flip} and image_mean/image_std reversed (channel order)',
            replace(pp, bgr=not pp.bgr))
    else:
        add(f'"bgr": {flip} (channel order)', replace(pp, bgr=not pp.bgr))
        add(f'"bgr": {flip} with the mean/std following their channels (written RGB)',
            replace(pp, bgr=not pp.bgr, mean=pp.mean[::-1], std=pp.std[::-1]))
    if pp.mean != pp.mean[::-1] or pp.std != pp.std[::-1]:
        keys = ("image_mean", "image_std") if hf else ("mean", "std")
        add(f'"{keys[0]}": {_fmt(pp.mean[::-1])}, "{keys[1]}": {_fmt(pp.std[::-1])} (mean/std in the other '
            "channel order)", replace(pp, mean=pp.mean[::-1], std=pp.std[::-1]))
    other = 1.0 if pp.scale != 1.0 else 255.0
    text = (f'"do_rescale": {str(other != 1.0).lower()}' if hf else f'"scale": {other:g}')
    add(f'{text} (pixels in {"0..255" if other == 1.0 else "0..1"})', replace(pp, scale=other))
    for name, v in PRESETS.items():
        cand = Preprocessing(name, v["scale"], tuple(v["mean"]), tuple(v["std"]), pp.bgr)
        if (cand.scale, cand.mean, cand.std) != (pp.scale, pp.mean, pp.std):
            m = cand.mean[::-1] if pp.bgr else cand.mean
            sd = cand.std[::-1] if pp.bgr else cand.std
            add(f'"image_mean": {_fmt(m)}, "image_std": {_fmt(sd)}' if hf else f'"mean": {_fmt(m)}, "std": {_fmt(sd)}'
                if timm else f'"preprocess": "{name}" (and no mean/std/scale)', cand)
    ih, iw = input_hw
    for mode in ("squash", "crop", "letterbox"):
        if mode != geo.mode:
            if hf:
                text = {"squash": f'"size": {{"height": {ih}, "width": {iw}}}',
                        "crop": f'"size": {{"shortest_edge": {ih}}}, "crop_pct": 0.875',
                        "letterbox": f'"size": {{"longest_edge": {max(ih, iw)}}}'}[mode]
            elif timm:
                text = f'"crop_mode": "{ {"squash": "squash", "crop": "center", "letterbox": "border"}[mode]}"'
            else:
                text = f'"resize": "{mode}"' + (f' (crop_pct {geo.pct:g})' if geo.pct != 1 else "")
            add(text, p=pp, g=replace(geo, mode=mode, size=None))
    for pct in (0.875, 1.0):  # an explicit size says its own crop_pct: try both then
        if geo.size is not None or abs(geo.pct - pct) > 1e-9:
            add(f'"crop_pct": {pct:g}', p=pp, g=replace(geo, crop_pct=pct, size=None))
    if geo.jpeg_quality:
        add('no "jpeg_quality" (no JPEG round trip)', p=pp, g=replace(geo, jpeg_quality=None))
        add(f'"jpeg_at": "{"resize" if geo.jpeg_at == "crop" else "crop"}"', p=pp,
            g=replace(geo, jpeg_at="resize" if geo.jpeg_at == "crop" else "crop"))
    else:
        add('"jpeg_quality": 75 (JPEG round trip after resize and crop)', p=pp, g=replace(geo, jpeg_quality=75))
    for colour in ((255.0, 255.0, 255.0), (0.0, 0.0, 0.0), None):
        if geo.pad_color != colour:
            text = f'"pad_color": {_fmt(colour)}' if colour else 'no "pad_color" (pad with the mean colour)'
            add(text, p=pp, g=replace(geo, pad_color=colour))
    for f in ("bilinear", "bicubic", "nearest", "lanczos", "box"):
        if FILTERS[f] != geo.resample:
            text = f'"resample": {FILTERS[f]} ({f})' if hf else f'"interpolation": "{f}"' if timm else \
                f'"resample": "{f}"'
            add(text, p=pp, g=replace(geo, resample=FILTERS[f]))
    add(f'"uint8_resize": {str(not geo.uint8).lower()}', p=pp, g=replace(geo, uint8=not geo.uint8))
    return out


def _fmt(t) -> str:
    return "[" + ", ".join(f"{v:g}" for v in t) + "]"


def verify(clf, expected: list[Expected], tolerance: float = 0.05, *, try_suspects: bool = True,
           on_image: Callable[[dict[str, Any]], None] | None = None) -> Report:
    """Score every expected image with ``clf`` as configured and compare (see the module docstring)."""
    images = [load_image(e.image) for e in expected]
    raw = _score_all(clf, images, clf.preprocessing, clf.geometry) if images else np.zeros((0, 1))
    rows = []
    for e, r in zip(expected, raw):
        row = _compare(clf, e, r)
        rows.append(row)
        if on_image is not None:
            on_image(row)
    worst = max(range(len(rows)), key=lambda i: rows[i]["gap"])
    known = [r for r in rows if r["agree"] is not None]
    rep = Report(rows, tolerance, rows[worst]["gap"], f"{rows[worst]['image']} class {rows[worst]['class']}",
                 sum(bool(r["agree"]) for r in known), len(known))
    if rep.passed or not try_suspects or getattr(clf, "preprocess_fn", None) is not None:
        return rep  # the suspects are declarative steps; a vendor function is taken as it is
    order = sorted(range(len(rows)), key=lambda i: -rows[i]["gap"])[:MAX_SUSPECT_IMAGES]
    sub_e, sub_i = [expected[i] for i in order], [images[i] for i in order]
    vocabulary = clf.pipeline.vocabulary if getattr(clf, "pipeline", None) is not None else "ours"
    for s in suspects(clf.preprocessing, clf.geometry, vocabulary, tuple(clf.input_size)):
        try:
            out = _score_all(clf, sub_i, s.preprocessing, s.geometry)
        except Exception:  # a change the model cannot take (e.g. NaN scores): not the answer
            continue
        cmp = [_compare(clf, e, r) for e, r in zip(sub_e, out)]
        gap = max(c["gap"] for c in cmp)
        agree = all(c["agree"] is not False for c in cmp)
        rep.tried.append((s.change, gap))
        if gap <= tolerance and agree and (rep.suggestion is None or gap < rep.suggestion[1]):
            rep.suggestion = (s.change, gap)
    if rep.suggestion is None and rep.tried:
        best = min(rep.tried, key=lambda t: t[1])
        if best[1] < rep.max_gap:
            rep.closest = best
    return rep


__all__ = ["FILTER_NAMES", "Report", "Suspect", "log_odds", "suspects", "verify"]
