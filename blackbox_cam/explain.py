"""The pipeline behind ``blackbox-cam explain``: image -> target -> method -> map at image size.

Public entry points: :func:`resolve_target` (``top1``, a class index or a label name) and
:func:`explain_image`, which runs one registered method on one image within a hard query
budget and returns the map at the image's original resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import BlackboxCamError
from .images import resize_map
from .methods import METHODS, Explanation


@dataclass
class Result:
    """One explained image: the method's explanation plus what the user asked about."""

    explanation: Explanation
    saliency: np.ndarray  # float32 (H, W) at the original image size, [0, 1]
    predicted: int
    predicted_score: float
    target: int
    score: float


def resolve_target(clf, target: str | int | None, probs: np.ndarray) -> int:
    """``top1`` / None -> argmax; an integer index; or a label name (case-insensitive)."""
    if target is None or (isinstance(target, str) and target.lower() == "top1"):
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


def method_names(whitebox: bool | None = None) -> list[str]:
    return [n for n, s in METHODS.items() if whitebox is None or s.whitebox == whitebox]


def explain_image(clf, image: np.ndarray, method: str = "decam", *, target: str | int | None = None,
                  budget: int | None = None, seed: int = 0, **options: Any) -> Result:
    """Explain one ``H x W x 3`` RGB image (float, 0..255) with ``method``.

    The unmasked prediction costs one query, counted inside ``budget`` (default: the method's
    own, e.g. 2000 for DE-CAM); the method gets the rest.
    """
    if method not in METHODS:
        raise BlackboxCamError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if budget is not None and budget <= 0:
        raise BlackboxCamError(f"--budget must be a positive number of model queries, got {budget}")
    spec = METHODS[method]
    if budget is None and not spec.whitebox:
        budget = spec.default_budget
    x = clf.prepare(image)
    with clf.limit(budget):
        probs = clf.probabilities(x[None])[0]
        tgt = resolve_target(clf, target, probs)
        inner = None if budget is None or spec.whitebox else budget - 1
        if not spec.whitebox:  # the unmasked score is known: methods need not pay for it again
            options = {"reference_score": float(probs[tgt]), **options}
        expl = spec.fn(clf, x, tgt, budget=inner, seed=seed, **options)
    expl.queries += 1
    if budget is not None:
        expl.params["budget"] = budget  # the user's budget, the unmasked prediction included
    expl.score = float(probs[tgt])
    pred = int(np.argmax(probs))
    sal = resize_map(expl.saliency, image.shape[:2])
    return Result(expl, np.clip(sal, 0.0, 1.0).astype(np.float32), pred, float(probs[pred]), tgt, float(probs[tgt]))
