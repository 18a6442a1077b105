"""How pixels become model input: presets, sidecar files and CLI overrides.

Vendors rarely document preprocessing, so we support the four conventions that cover most
exports (``imagenet`` mean/std, ``unit`` [0, 1], ``symmetric`` [-1, 1], ``raw`` 0-255) plus
explicit ``mean``/``std``/``scale`` in a sidecar ``<model>.json`` next to the model. A pixel value
``v`` in [0, 255] maps to ``(v / scale - mean) / std``. Precedence: CLI flag > sidecar > preset
default (``imagenet``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BlackboxCamError

PRESETS: dict[str, dict[str, Any]] = {
    "imagenet": {"scale": 255.0, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "unit": {"scale": 255.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
    "symmetric": {"scale": 255.0, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "raw": {"scale": 1.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
}
LAYOUTS = ("NCHW", "NHWC")
SIDECAR_KEYS = {"preprocess", "mean", "std", "scale", "bgr", "layout", "labels", "resize",
                "input_size", "output"}


@dataclass(frozen=True)
class Preprocessing:
    """Pixel normalisation: ``(v / scale - mean) / std`` per channel, optional RGB->BGR."""

    name: str = "imagenet"
    scale: float = 255.0
    mean: tuple[float, ...] = PRESETS["imagenet"]["mean"]
    std: tuple[float, ...] = PRESETS["imagenet"]["std"]
    bgr: bool = False

    def apply(self, image: np.ndarray, channels: int = 3) -> np.ndarray:
        """``H x W x 3`` RGB float [0, 255] -> ``(C, H, W)`` float32 model space."""
        img = image[:, :, ::-1] if self.bgr else image
        if channels == 1:
            img = img.mean(axis=2, keepdims=True)
        mean = np.asarray(self.mean, np.float32)[:channels]
        std = np.asarray(self.std, np.float32)[:channels]
        x = (img.astype(np.float32) / np.float32(self.scale) - mean) / std
        return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def preset(name: str) -> Preprocessing:
    if name not in PRESETS:
        raise BlackboxCamError(f"unknown preprocessing {name!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[name]
    return Preprocessing(name=name, scale=p["scale"], mean=tuple(p["mean"]), std=tuple(p["std"]))


def sidecar_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def read_sidecar(model_path: str | Path) -> dict[str, Any]:
    """The ``<model>.json`` next to the model, or ``{}``; a malformed one is an error."""
    p = sidecar_path(model_path)
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise BlackboxCamError(f"{p}: sidecar is not valid JSON ({e}); fix or remove it") from None
    if not isinstance(data, dict):
        raise BlackboxCamError(f"{p}: sidecar must be a JSON object with keys {sorted(SIDECAR_KEYS)}")
    unknown = set(data) - SIDECAR_KEYS
    if unknown:
        raise BlackboxCamError(f"{p}: unknown sidecar keys {sorted(unknown)}; valid keys are {sorted(SIDECAR_KEYS)}")
    return data


def resolve(sidecar: dict[str, Any], *, preprocess: str | None = None, bgr: bool | None = None,
            source: str = "sidecar") -> Preprocessing:
    """Combine preset, sidecar values and CLI overrides (CLI wins)."""
    if preprocess is not None:
        pp = preset(preprocess)
    else:
        pp = preset(sidecar.get("preprocess", "imagenet"))
        over: dict[str, Any] = {}
        for key in ("scale", "mean", "std"):
            if key in sidecar:
                val = sidecar[key]
                try:
                    over[key] = float(val) if key == "scale" else tuple(float(v) for v in val)
                except (TypeError, ValueError):
                    raise BlackboxCamError(f"{source}: '{key}' must be a number or list of numbers, got {val!r}") from None
        if over:
            pp = replace(pp, name=sidecar.get("preprocess", "custom"), **over)
    use_bgr = bool(sidecar.get("bgr", False)) if bgr is None else bgr
    return replace(pp, bgr=use_bgr)
