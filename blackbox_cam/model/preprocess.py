"""How pixels become model input: presets, sidecar files and CLI overrides.

Vendors rarely document preprocessing, so we support the four conventions that cover most
exports (``imagenet`` mean/std, ``unit`` [0, 1], ``symmetric`` [-1, 1], ``raw`` 0-255) plus
explicit ``mean``/``std``/``scale`` in a sidecar ``<model>.json`` next to the model. A pixel value
``v`` in [0, 255] maps to ``(v / scale - mean) / std``. Precedence: CLI flag > sidecar > preset
default (``imagenet``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BlackboxCamError
from .geometry import RESIZE_MODES

PRESETS: dict[str, dict[str, Any]] = {
    "imagenet": {"scale": 255.0, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "unit": {"scale": 255.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
    "symmetric": {"scale": 255.0, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "raw": {"scale": 1.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
}
LAYOUTS = ("NCHW", "NHWC")
SIDECAR_KEYS = {"preprocess", "mean", "std", "scale", "bgr", "layout", "labels", "resize", "crop_pct",
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
    return validate_sidecar(data, str(p))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _sidecar_problems(data: dict[str, Any]) -> list[str]:
    """Every problem of a sidecar's values, one sentence each (types, lengths, ranges)."""
    probs = [f"unknown sidecar key {k!r} (valid keys: {', '.join(sorted(SIDECAR_KEYS))})" for k in data if k not in SIDECAR_KEYS]
    v = data.get("preprocess")
    if "preprocess" in data and v not in PRESETS:
        probs.append(f'"preprocess" must be one of {", ".join(PRESETS)}, got {v!r}')
    for key in ("mean", "std"):
        if key not in data:
            continue
        v = data[key]
        if not isinstance(v, list) or not v or not all(_is_number(x) for x in v):
            probs.append(f'"{key}" must be a list of numbers, e.g. [0.485, 0.456, 0.406], got {json.dumps(v)}')
        elif len(v) not in (1, 3):
            probs.append(f'"{key}" has {len(v)} values; give 3 (one per channel, in RGB order) or 1 (every channel)')
        elif key == "std" and any(x <= 0 for x in v):
            probs.append(f'"std" must be positive (it divides the pixels), got {json.dumps(v)}')
    if "scale" in data and not (_is_number(data["scale"]) and data["scale"] > 0):
        probs.append(f'"scale" must be a positive number (255 for pixels in 0..255), got {json.dumps(data["scale"])}')
    if "bgr" in data and not isinstance(data["bgr"], bool):
        probs.append(f'"bgr" must be true or false (JSON booleans, no quotes), got {json.dumps(data["bgr"])}')
    if "layout" in data and not (isinstance(data["layout"], str) and data["layout"].upper() in LAYOUTS):
        probs.append(f'"layout" must be "NCHW" or "NHWC", got {json.dumps(data["layout"])}')
    if "labels" in data and not (isinstance(data["labels"], str) and data["labels"].strip()):
        probs.append(f'"labels" must be a file name (relative to the model\'s folder), got {json.dumps(data["labels"])}')
    if "resize" in data and data["resize"] not in RESIZE_MODES:
        probs.append(f'"resize" must be one of {", ".join(RESIZE_MODES)}, got {json.dumps(data["resize"])}')
    if "crop_pct" in data and not (_is_number(data["crop_pct"]) and 0 < data["crop_pct"] <= 1):
        probs.append(f'"crop_pct" must be a number in (0, 1], e.g. 0.875 (224 of 256), got {json.dumps(data["crop_pct"])}')
    if "input_size" in data:
        v = data["input_size"]
        ok = isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        if not ok:
            probs.append(f'"input_size" must be [height, width] as two integers, e.g. [224, 224], got {json.dumps(v)}')
        elif min(v) <= 0:
            probs.append(f'"input_size" must be positive, got {json.dumps(v)}')
    if "output" in data:
        v = data["output"]
        if not ((isinstance(v, str) and v) or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)):
            probs.append(f'"output" must be an output name or a non-negative index, got {json.dumps(v)}')
    return probs


def validate_sidecar(data: dict[str, Any], source: str = "sidecar") -> dict[str, Any]:
    """``data`` if every key and value is valid; otherwise one error listing every problem, one per line."""
    probs = _sidecar_problems(data)
    if len(probs) == 1:
        raise BlackboxCamError(f"{source}: {probs[0]}")
    if probs:
        raise BlackboxCamError(f"{source}: {len(probs)} problems:\n" + "\n".join(f"  - {q}" for q in probs))
    return data


def resolve(sidecar: dict[str, Any], *, preprocess: str | None = None, bgr: bool | None = None,
            source: str = "sidecar") -> Preprocessing:
    """Combine preset, sidecar values and CLI overrides (CLI wins)."""
    validate_sidecar(sidecar, source)
    if preprocess is not None:
        pp = preset(preprocess)
    else:
        pp = preset(sidecar.get("preprocess", "imagenet"))
        over: dict[str, Any] = {}
        if "scale" in sidecar:
            over["scale"] = float(sidecar["scale"])
        for key in ("mean", "std"):
            if key in sidecar:
                vals = tuple(float(v) for v in sidecar[key])
                over[key] = vals * 3 if len(vals) == 1 else vals
        if over:
            pp = replace(pp, name=sidecar.get("preprocess", "custom"), **over)
    use_bgr = sidecar.get("bgr", False) if bgr is None else bool(bgr)
    return replace(pp, bgr=use_bgr)
