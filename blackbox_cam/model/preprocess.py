"""How pixels become model input values: presets, the sidecar's values and CLI overrides.

A pixel value ``v`` in [0, 255] maps to ``(v / scale - mean) / std`` per channel, after the
channels are put in the order the model receives them (RGB, or BGR with ``bgr``); ``mean`` and
``std`` are in that same order. Four presets cover most exports (``imagenet`` mean/std,
``unit`` [0, 1], ``symmetric`` [-1, 1], ``raw`` 0-255); a sidecar (:mod:`.sidecar`: ours,
Hugging Face's ``preprocessor_config.json`` or timm's ``pretrained_cfg``) gives exact values.
Precedence: CLI flag > sidecar > preset default (``imagenet``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BlackboxCamError
from .sidecar import LAYOUTS, Pipeline, find_sidecar, load_sidecar, translate, validate

PRESETS: dict[str, dict[str, Any]] = {
    "imagenet": {"scale": 255.0, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "unit": {"scale": 255.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
    "symmetric": {"scale": 255.0, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "raw": {"scale": 1.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
}
__all__ = ["LAYOUTS", "PRESETS", "Preprocessing", "preset", "read_sidecar", "resolve", "validate_sidecar"]


@dataclass(frozen=True)
class Preprocessing:
    """Pixel normalisation: optional RGB->BGR, then ``(v / scale - mean) / std`` per channel, with
    ``mean`` and ``std`` in the order the model receives the channels."""

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

    def describe(self) -> str:
        order = "BGR" if self.bgr else "RGB"
        fmt = lambda t: "[" + ", ".join(f"{v:g}" for v in t) + "]"  # noqa: E731
        return f"{order}, (v / {self.scale:g} - {fmt(self.mean)}) / {fmt(self.std)}"


def preset(name: str) -> Preprocessing:
    if name not in PRESETS:
        raise BlackboxCamError(f"unknown preprocessing {name!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[name]
    return Preprocessing(name=name, scale=p["scale"], mean=tuple(p["mean"]), std=tuple(p["std"]))


def sidecar_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def read_sidecar(model_path: str | Path, given: str | Path | None = None) -> dict[str, Any]:
    """The sidecar next to the model (``<model>.json``, else ``preprocessor_config.json``) or
    ``given``, validated; ``{}`` when there is none."""
    path = find_sidecar(model_path, given)
    data = load_sidecar(path)
    return validate(data, str(path)) if path is not None else data


def validate_sidecar(data: dict[str, Any], source: str = "sidecar") -> dict[str, Any]:
    """``data`` if every key and value is valid; otherwise one error listing every problem."""
    return validate(data, source)


def resolve(sidecar: dict[str, Any] | Pipeline, *, preprocess: str | None = None, bgr: bool | None = None,
            source: str = "sidecar") -> Preprocessing:
    """Combine preset, sidecar values and CLI overrides (CLI wins)."""
    pipe = sidecar if isinstance(sidecar, Pipeline) else translate(sidecar, source)
    if preprocess is not None:
        pp = preset(preprocess)
    else:
        pp = preset(pipe.preset or "imagenet")
        over: dict[str, Any] = {}
        if pipe.scale is not None:
            over["scale"] = float(pipe.scale)
        if pipe.mean is not None:
            over["mean"] = pipe.mean
        if pipe.std is not None:
            over["std"] = pipe.std
        if over:
            name = pipe.preset or ("custom" if pipe.vocabulary == "ours" else pipe.vocabulary)
            pp = replace(pp, name=name, **over)
    if bgr is not None and bool(bgr) != pipe.bgr and pipe.vocabulary != "ours" and preprocess is None:
        # the flag flips the channel order; RGB-defined mean/std follow their channels
        pp = replace(pp, mean=pp.mean[::-1], std=pp.std[::-1])
    return replace(pp, bgr=pipe.bgr if bgr is None else bool(bgr))
