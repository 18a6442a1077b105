"""The pipeline behind ``blackbox-cam explain``: image -> target -> method -> map at image size.

Public entry points: :func:`resolve_target` (``top1``, a class index or a label name) and
:func:`explain_image`, which runs one registered method on one image within a hard query
budget and returns the map at the image's original resolution. Callers that explain one image
with several methods score it once (:func:`score_image`) and run each checked method call
(:meth:`blackbox_cam.methods.MethodSpec.bind`) on it with :func:`explain_scored`.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import BlackboxCamError
from ..model.backends import log
from ..model.geometry import Geometry
from ..methods import Call, Explanation, get_method
from ..methods.uncertainty import confidence
from ..pictures.display import Shows, add_colorbar, display_size, new_axes
from ..pictures.render import overlay, panel


@dataclass(repr=False)
class Result(Shows):
    """One explained image: the method's explanation plus what the user asked about.

    It shows itself (:class:`blackbox_cam.pictures.display.Shows`): :meth:`overlay` is the PNG the CLI
    writes, :meth:`plot` / :meth:`show` draw it with a colour bar and a caption, a bare result in
    a notebook displays it, and :meth:`save` writes the CLI's files and ``explain.json`` record.
    The fields after ``score`` say what was explained (set by :func:`explain_scored`; ``image``
    is None for a result rebuilt without its picture).
    """

    explanation: Explanation
    saliency: np.ndarray  # float32 (H, W) at the original image size, [0, 1]
    predicted: int
    predicted_score: float
    target: int
    score: float
    image: np.ndarray | None = None        # H x W x 3 RGB float 0..255, the image explained
    label: str | None = None               # the target's class name
    predicted_label: str | None = None
    model: str | None = None               # the model file
    source: str | None = None              # the image file (or a name given to an in-memory image)
    stem: str | None = None                # file-name stem for save() (default: the source's)
    image_size: tuple[int, int] | None = None  # (H, W) of the file, when it was read reduced
    backend: dict[str, Any] | None = None  # what ran the model (explain.json's "backend")
    cached: bool = False                   # rebuilt from a map cache (no query made)
    se: np.ndarray | None = None           # per-pixel standard error at the image's size (black-box)
    pipeline: dict[str, Any] | None = None  # vendor functions (file, SHA-256) and --score, when not the default
    box: tuple[float, float, float, float] | None = None  # a detection's box, the image's pixels (x0, y0, x1, y1)
    detection: int | None = None           # its index in the image's detections (None: a --box the model did not report)
    confidence: float | None = None        # the detector's score of that detection

    @property
    def method(self) -> str:
        return self.explanation.method

    def overlay(self, uncertainty: bool = False) -> Image.Image:
        """The map in jet colours over the image at the image's size: the PNG ``explain`` writes;
        ``uncertainty``: greyed where the map is not 2 standard errors above zero."""
        if self.image is None:
            raise BlackboxCamError("this result does not hold its image, so it cannot draw an overlay")
        conf = confidence(self.saliency, self.se) if uncertainty and self.se is not None else None
        pic = overlay(self.image, self.saliency, confidence=conf)
        if self.box is not None:  # a detection's map: its box and label drawn on it
            from ..pictures.boxes import draw_boxes
            box = np.asarray(self.box, np.float64)[None]
            if self.image_size is not None and tuple(self.image_size) != tuple(self.image.shape[:2]):
                box = box * np.array([self.image.shape[1] / self.image_size[1],
                                      self.image.shape[0] / self.image_size[0]] * 2)
            pic = draw_boxes(pic, box, [self.target], [self.box_caption()])
        return pic

    def box_caption(self) -> str:
        """``label #K 0.87`` (the detector's score) or ``label (not reported)`` for a --box target."""
        name = self.label or str(self.target)
        if self.detection is None:
            return f"{name} (not reported)"
        return f"{name} #{self.detection} {self.confidence:.2f}" if self.confidence is not None else f"{name} #{self.detection}"

    def caption(self) -> str:
        """``label (score), method, N queries`` (and the prediction when the target is another class);
        for a detection ``label #K (similarity s), method, N queries``."""
        if self.box is not None:
            q = self.explanation.queries
            return (f"{self.box_caption()}, similarity {self.score:.3f}\n"
                    f"{self.method}, {q} {'query' if q == 1 else 'queries'}")
        what = f"{self.label or self.target} ({self.score:.3f})"
        if self.target != self.predicted:
            what += f"; predicted {self.predicted_label or self.predicted} ({self.predicted_score:.3f})"
        q = self.explanation.queries
        return f"{what}\n{self.method}, {q} {'query' if q == 1 else 'queries'}"

    def describe(self) -> str:
        name = f"{Path(self.source).name}: " if self.source else ""
        return f"{name}{self.caption().replace(chr(10), ', ')}"

    def __repr__(self) -> str:
        h, w = self.saliency.shape
        return f"<Result {self.describe()}, map {w}x{h}>"

    def picture(self) -> Image.Image:
        """The overlay with its caption underneath (what a bare result shows in a notebook)."""
        pic = display_size(self.overlay())
        return panel([pic], [self.caption()], tile=pic.height)

    def plot(self, ax=None, *, title: bool = True, colorbar: bool = True):
        """The overlay on matplotlib axes with a colour bar (0..1) and the caption as title."""
        pic = self.overlay()
        ax = new_axes(ax, 6.0, 4.6 * pic.height / pic.width + 0.8)
        ax.imshow(np.asarray(pic))
        ax.set_axis_off()
        if title:
            ax.set_title(self.caption(), fontsize=10)
        if colorbar:
            add_colorbar(ax)
        return ax

    def save(self, out_dir: str | os.PathLike, *, name: str | None = None) -> dict[str, Any]:
        """Write ``<stem>_<method>.npy`` and ``.png`` into ``out_dir`` and add the record to its
        ``explain.json``, exactly as ``blackbox-cam explain --out out_dir`` does (same writer,
        merged with what is there); returns the record. ``name`` names an in-memory image."""
        from .records import save_results

        return save_results([self], out_dir, names=[name])[0]


def resolve_target(clf, target: str | int | None, probs: np.ndarray | None = None) -> int:
    """``top1`` / None -> argmax of ``probs``; an integer index; or a label name (case-insensitive).

    A string of digits is an index, except for a model whose labels are *all* numbers (a page
    orientation model's ``0, 90, 180, 270``): there a label match wins and one log line says
    so. ``index:N`` and ``label:NAME`` force either reading. A Python ``int`` is always an index.
    """
    if target is None or (isinstance(target, str) and target.lower() == "top1"):
        if probs is None:
            raise ValueError("resolve_target: top1 needs the image's probabilities")
        return int(np.argmax(probs))
    labels = list(clf.labels or [])
    names = [n.lower() for n in labels]
    if isinstance(target, str) and target.lower().startswith(("index:", "label:")):
        kind, _, value = target.partition(":")
        return _index(clf, value) if kind.lower() == "index" else _label(clf, value, names)
    if isinstance(target, (int, np.integer)):
        return _index(clf, target)
    if target.lstrip("-").isdigit():
        numeric = bool(names) and all(n.strip().lstrip("-").isdigit() for n in names)
        if numeric and target.lower() in names:
            idx = names.index(target.lower())
            log.warning("--target %s: the class named %r (index %d); this model's labels are all numbers, so a "
                        "label match wins (index:%s for the class at index %s)", target, labels[idx], idx,
                        target, target)
            return idx
        return _index(clf, target, numeric and labels)
    return _label(clf, target, names)


def _index(clf, value: str | int, numeric_labels: list[str] | bool = False) -> int:
    try:
        idx = int(value)
    except ValueError:
        raise BlackboxCamError(f"--target index:{value} is not a class index") from None
    if not 0 <= idx < clf.num_classes:
        hint = f"; its class names are {', '.join(numeric_labels)}" if numeric_labels else ""
        raise BlackboxCamError(f"--target {idx} is out of range: the model has {clf.num_classes} classes "
                               f"(0..{clf.num_classes - 1}){hint}")
    return idx


def _label(clf, target: str, names: list[str]) -> int:
    if target.lower() in names:
        return names.index(target.lower())
    import difflib
    close = difflib.get_close_matches(target.lower(), names, n=3)
    hint = f"; did you mean {', '.join(repr(clf.labels[names.index(c)]) for c in close)}?" if close else (
        "; the model has no labels file, use a class index" if not names else "")
    raise BlackboxCamError(f"--target {target!r} is not a class label{hint}")


@dataclass(frozen=True)
class Scored:
    """One image scored once: every method explaining it shares this prediction and target."""

    image: np.ndarray      # H x W x 3 RGB float, 0..255, original size
    x: np.ndarray          # model space (C, H, W) at the input size (the image itself with a preprocess_fn)
    probs: np.ndarray      # class probabilities of the unmasked image
    target: int
    value: float | None = None  # the explained score of the target (probability or log-odds, --score)


def score_image(clf, image: np.ndarray, target: str | int | None = None) -> Scored:
    """Prepare ``image``, score it (one query) and resolve ``target`` against that prediction."""
    x = clf.prepare(image)
    both = getattr(clf, "probabilities_and_explained", None)
    probs, values = both(x[None]) if both is not None else (clf.probabilities(x[None]), None)
    probs = probs[0]
    check_finite(probs, "the model's scores for the image")
    t = resolve_target(clf, target, probs)
    return Scored(image, x, probs, t, None if values is None else float(values[0, t]))


def explain_scored(clf, scored: Scored, call: Call, *, seed: int = 0) -> Result:
    """Run a checked method call on a scored image; the map comes back at the image's size.

    The unmasked prediction of ``scored`` counts once in every explanation's queries and budget.
    """
    keep = getattr(clf, "padding_kept", None)
    geo = getattr(clf, "geometry", None)
    if call.spec.whitebox and getattr(geo, "probed", False):
        geo.place(scored.image.shape[:2])  # a function that is no resampling: one line before the gradient run
    value = scored.value if scored.value is not None else float(scored.probs[scored.target])
    with keep(scored.x, scored.image.shape[:2]) if keep is not None else contextlib.nullcontext():
        expl = call.run(clf, scored.x, scored.target, seed=seed, score=value)
    pred = int(np.argmax(scored.probs))
    check_finite(expl.saliency, f"the {call.spec.name} map")
    sal = np.clip(map_to_image(clf, expl.saliency, scored.image.shape[:2], model_space=call.spec.whitebox),
                  0.0, 1.0).astype(np.float32)
    return make_result(clf, expl, sal, pred, float(scored.probs[pred]), scored.target,
                       float(scored.probs[scored.target]), scored.image)


def make_result(clf, explanation: Explanation, saliency: np.ndarray, predicted: int, predicted_score: float,
                target: int, score: float, image: np.ndarray | None) -> Result:
    """A :class:`Result` with what ``clf`` says about it: class names, model file, backend."""
    label = getattr(clf, "label", None)
    session = getattr(clf, "session", None)
    se = None
    if explanation.se is not None:
        se = np.maximum(map_to_image(clf, explanation.se, saliency.shape), 0.0).astype(np.float32)
    record = getattr(clf, "pipeline_record", None)
    pipe = record() if record is not None and (clf.preprocess_fn or clf.postprocess_fn
                                               or clf.score_kind != "probability") else None
    geo = getattr(clf, "geometry", None)
    if pipe is not None and getattr(geo, "probed", False) and image is not None:
        pipe["geometry"] = geo.describe(image.shape[:2])  # what the probes found for this image's size
    return Result(explanation, saliency, int(predicted), float(predicted_score), int(target), float(score),
                  image=image, se=se, pipeline=pipe, label=label(target) if label else None,
                  predicted_label=label(predicted) if label else None,
                  model=str(clf.path) if getattr(clf, "path", None) is not None else None,
                  backend=session.record() if hasattr(session, "record") else None)


def map_to_image(clf, saliency: np.ndarray, image_hw: tuple[int, int], *, model_space: bool | None = None) -> np.ndarray:
    """A model-resolution map on the ``image_hw`` image, through the classifier's resize rule
    (:mod:`blackbox_cam.model.geometry`: zeros where a crop hid the image from the model). With
    a ``preprocess_fn`` the geometry is probed (:class:`~blackbox_cam.model.vendor_fn.FunctionGeometry`):
    black-box maps are already on the image, white-box ones (``model_space``) go through the probe."""
    geo = getattr(clf, "geometry", Geometry())
    if getattr(geo, "probed", False):
        return geo.to_image(saliency, image_hw, model_space)
    return geo.to_image(saliency, image_hw)


def check_finite(values: np.ndarray, what: str) -> None:
    """Refuse NaN/inf: a NaN score would pick a NaN class as top-1 and give an all-zero map
    that looks like an answer. The caller records the image as failed and goes on."""
    bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
    if bad.any():
        raise BlackboxCamError(f"{what} hold {int(bad.sum())} NaN/inf value(s) of {bad.size}; the model "
                               "(or its preprocessing: zero std? wrong --preprocess?) produced no usable "
                               "numbers, so no map is made")



def explain_image(clf, image: np.ndarray, method: str = "decam", *, target: str | int | None = None,
                  budget: int | None = None, seed: int = 0, **options: Any) -> Result:
    """Explain one ``H x W x 3`` RGB image (float, 0..255) with ``method``.

    ``options`` are the method's declared options (``METHODS[method].options``); they and the
    budget are checked before the model is asked anything. The unmasked prediction costs one
    query, counted inside ``budget`` (default: the method's own, e.g. 2000 for DE-CAM).
    """
    call = get_method(method).bind(budget, clf.input_size, **options)
    return explain_scored(clf, score_image(clf, image, target), call, seed=seed)
