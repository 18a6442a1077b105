"""Saliency methods, all under one interface (:mod:`blackbox_cam.methods.base`).

Importing this package registers every method: black-box ``decam``, ``rise``, ``occlusion``
and, when the gradient path imports, the white-box Grad-CAM family.
"""
from .base import METHODS, Explanation, MethodSpec, register  # noqa: F401
from . import decam, occlusion, rise  # noqa: F401  (registration)

try:  # the white-box family lives in its own module; the black-box core never depends on it
    from . import gradcam  # noqa: F401
except ImportError as _e:  # pragma: no cover - only while the module is absent
    if "gradcam" not in str(_e) and "gradients" not in str(_e) and "cams" not in str(_e):
        raise

__all__ = ["METHODS", "Explanation", "MethodSpec", "register"]
