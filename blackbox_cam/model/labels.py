"""Class names: from a labels file, or from the model's own ``metadata_props``.

Exporters store class names in the ONNX model's metadata in several conventions; we read the
ones seen in the wild, under the keys :data:`METADATA_KEYS` (first match wins):

* newline-separated text (one name per line, as in a ``labels.txt``);
* comma-separated text (``"cat,dog"``);
* a JSON list (``["cat", "dog"]``);
* an index -> name mapping, as JSON (``{"0": "cat", "1": "dog"}``) or as the Python dict literal
  Ultralytics writes (``{0: 'cat', 1: 'dog'}``); indices must be 0..n-1.

PaddleOCR-style ``character`` holds one symbol per line. Names are used only when their number
matches the model's classes; otherwise the next key is tried and, failing all, classes are shown
by index (a labels file via ``--labels`` or the sidecar always wins over metadata).
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Mapping

from ..errors import BlackboxCamError

METADATA_KEYS = ("labels", "classes", "class_names", "names", "character")


def parse_labels(text: str) -> list[str] | None:
    """Class names from one of the conventions above, or None if ``text`` is none of them."""
    t = text.strip()
    if not t:
        return None
    if t[0] in "[{":
        for parse in (json.loads, ast.literal_eval):
            try:
                value = parse(t)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            return _from_value(value)
        return None
    if "\n" in t:
        return [ln.strip() for ln in t.splitlines() if ln.strip()]
    return [p.strip() for p in t.split(",") if p.strip()]


def _from_value(value: object) -> list[str] | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    if isinstance(value, dict):
        try:
            items = {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            return None
        if sorted(items) != list(range(len(items))):
            return None
        return [items[i] for i in range(len(items))]
    return None


def labels_from_metadata(props: Mapping[str, str], num_classes: int) -> tuple[str, list[str]] | None:
    """``(key, names)`` from the first of :data:`METADATA_KEYS` (case-insensitive) whose value
    parses to exactly ``num_classes`` names; None if there is none."""
    lower = {k.lower(): v for k, v in props.items()}
    for key in METADATA_KEYS:
        if key in lower:
            names = parse_labels(lower[key])
            if names is not None and len(names) == num_classes:
                return key, names
    return None


def read_labels_file(path: Path, num_classes: int) -> list[str]:
    """One class name per line (blank lines ignored); the count must match the model's classes."""
    try:
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as e:
        raise BlackboxCamError(f"{path}: cannot read labels ({e.strerror})") from None
    except UnicodeDecodeError:
        raise BlackboxCamError(f"{path}: labels file is not UTF-8 text; save it as UTF-8, one name per line") from None
    if len(names) != num_classes:
        raise BlackboxCamError(f"{path}: has {len(names)} labels but the model has {num_classes} classes")
    return names
