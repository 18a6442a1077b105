"""The pipeline behind ``blackbox-cam explain``: image -> target -> method -> map at image size.

Public entry points: :func:`resolve_target` (``top1``, a class index or a label name) and
:func:`explain_image`, which runs one registered method on one image within a hard query
budget and returns the map at the image's original resolution. Callers that explain one image
with several methods score it once (:func:`score_image`) and run each checked method call
(:meth:`blackbox_cam.methods.MethodSpec.bind`) on it with :func:`explain_scored`.
"""
from __future__ import annotations

import contextlib

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BlackboxCamError
from ..model.geometry import Geometry
from ..methods import Call, Explanation, get_method


@dataclass
class Result:
    """One explained image: the method's explanation plus what the user asked about."""

    explanation: Explanation
    saliency: np.ndarray  # float32 (H, W) at the original image size, [0, 1]
    predicted: int
    predicted_score: float
    target: int
    score: float


def resolve_target(clf, target: str | int | None, probs: np.ndarray | None = None) -> int:
    """``top1`` / None -> argmax of ``probs``; an integer index; or a label name (case-insensitive)."""
    if target is None or (isinstance(target, str) and target.lower() == "top1"):
        if probs is None:
            raise ValueError("resolve_target: top1 needs the image's probabilities")
        return int(np.argmax(probs))
    if isinstance(target, (int, np.integer)) or (isinstance(target, str) and target.lstrip("-").isdigit()):
        idx = int(target)
        if not 0 <= idx < clf.num_classes:
            raise BlackboxCamError(f"--target {idx} is out of range: the model has {clf.num_classes} classes "
                                   f"(0..{clf.num_classes - 1})")
        return idx
    names = [n.lower() for n in (clf.labels or [])]
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
    x: np.ndarray          # model space (C, H, W) at the input size
    probs: np.ndarray      # class probabilities of the unmasked image
    target: int


def score_image(clf, image: np.ndarray, target: str | int | None = None) -> Scored:
    """Prepare ``image``, score it (one query) and resolve ``target`` against that prediction."""
    x = clf.prepare(image)
    probs = clf.probabilities(x[None])[0]
    check_finite(probs, "the model's scores for the image")
    return Scored(image, x, probs, resolve_target(clf, target, probs))


def explain_scored(clf, scored: Scored, call: Call, *, seed: int = 0) -> Result:
    """Run a checked method call on a scored image; the map comes back at the image's size.

    The unmasked prediction of ``scored`` counts once in every explanation's queries and budget.
    """
    keep = getattr(clf, "padding_kept", None)
    with keep(scored.x, scored.image.shape[:2]) if keep is not None else contextlib.nullcontext():
        expl = call.run(clf, scored.x, scored.target, seed=seed, score=float(scored.probs[scored.target]))
    pred = int(np.argmax(scored.probs))
    check_finite(expl.saliency, f"the {call.spec.name} map")
    sal = np.clip(map_to_image(clf, expl.saliency, scored.image.shape[:2]), 0.0, 1.0).astype(np.float32)
    return Result(expl, sal, pred, float(scored.probs[pred]), scored.target, expl.score)


def map_to_image(clf, saliency: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """A model-resolution map on the ``image_hw`` image, through the classifier's resize rule
    (:mod:`blackbox_cam.model.geometry`: zeros where a crop hid the image from the model)."""
    return getattr(clf, "geometry", Geometry()).to_image(saliency, image_hw)


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
