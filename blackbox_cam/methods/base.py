"""What every saliency method returns, and the registry the CLI's choices come from.

A method is a function ``fn(clf, x, target, *, budget, seed, **options) -> Explanation`` where
``clf`` is a :class:`blackbox_cam.runtime.Classifier`, ``x`` the preprocessed image in model space
(float32, channels-first ``(3, H, W)`` at the model's input size) and ``target`` a class index.
Methods return a saliency map at the model's input resolution; :func:`blackbox_cam.explain.explain_image`
resizes it to the original image. Registering with :func:`register` makes a method appear in
``blackbox-cam explain --method`` (the CLI reads :data:`METHODS`, so the two cannot drift).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np


@dataclass
class Explanation:
    """A saliency map and how it was obtained.

    Attributes
    ----------
    saliency : float32 array (H, W) in [0, 1], high = important for ``target``.
    target : class index explained.
    score : the target's probability on the unmasked image.
    queries : images the model was asked to score (the budget counts these).
    seconds : wall time of the method.
    params : the method's effective parameters (defaults filled in), for reports.
    method : registry name.
    extra : method-specific results (e.g. DE-CAM's best mask and fitness history).
    """

    saliency: np.ndarray
    target: int
    score: float
    queries: int
    seconds: float
    params: dict[str, Any]
    method: str
    extra: dict[str, Any] = field(default_factory=dict)


class Method(Protocol):
    def __call__(self, clf: Any, x: np.ndarray, target: int, *, budget: int | None,
                 seed: int, **options: Any) -> Explanation: ...


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Method
    whitebox: bool
    summary: str
    default_budget: int | None = None


METHODS: dict[str, MethodSpec] = {}


def register(name: str, *, whitebox: bool = False, summary: str = "",
             default_budget: int | None = None) -> Callable[[Method], Method]:
    """Add a method to :data:`METHODS` under ``name``; ``default_budget`` applies when the user gives none."""

    def deco(fn: Method) -> Method:
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = MethodSpec(name, fn, whitebox, summary or (fn.__doc__ or "").strip().split("\n")[0],
                                   default_budget)
        return fn

    return deco


def normalise(saliency: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] (a constant map becomes all zeros), float32."""
    s = np.asarray(saliency, dtype=np.float64)
    lo, hi = float(s.min()), float(s.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 1e-12:
        return np.zeros(s.shape, np.float32)
    return ((s - lo) / (hi - lo)).astype(np.float32)
