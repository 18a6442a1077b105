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


LABEL_FORMATS = ("one name per line", "JSON list", "index -> name mapping",
                 "Hugging Face config.json id2label", "name -> index mapping (Keras class_indices)")


def labels_from_text(text: str, source: str) -> tuple[list[str], str]:
    """Class names from a labels file's text and the format detected (:data:`LABEL_FORMATS`).

    * a JSON list (``["cat", "dog"]``);
    * an index -> name mapping (``{"0": "cat", "1": "dog"}``; a value that is a list, as Keras'
      ``imagenet_class_index.json`` ``{"0": ["n01440764", "tench"]}``, gives its last item);
    * a Hugging Face ``config.json``: its ``id2label``, read from the file itself;
    * a name -> index mapping (``{"cat": 0, "dog": 1}``, Keras' ``class_indices``);
    * otherwise one name per line (blank lines ignored).

    Indices come from the mapping, never from the key order; they must be 0..n-1, each once.
    """
    t = text.strip()
    if t[:1] in "[{":
        try:
            value = json.loads(t)
        except ValueError as e:
            raise BlackboxCamError(f"{source}: starts like JSON but is not valid JSON ({e}); fix it, or write "
                                   "one class name per line") from None
        if isinstance(value, list):
            if not all(isinstance(v, (str, int, float)) for v in value):
                raise BlackboxCamError(f"{source}: a JSON list of labels must hold names (strings)")
            return [str(v) for v in value], "JSON list"
        if not isinstance(value, dict):
            raise BlackboxCamError(f"{source}: JSON labels must be a list or an object")
        fmt = "index -> name mapping"
        if isinstance(value.get("id2label"), dict):
            value, fmt = value["id2label"], "Hugging Face config.json id2label"
        if value and all(_is_index(k) for k in value):
            pairs = {int(k): (v[-1] if isinstance(v, list) and v else v) for k, v in value.items()}
        elif value and all(_is_index(v) and not isinstance(v, bool) for v in value.values()):
            fmt = "name -> index mapping (Keras class_indices)"
            pairs = {}
            for k, v in value.items():
                if int(v) in pairs:
                    raise BlackboxCamError(f"{source}: {fmt}: index {int(v)} is given to both {pairs[int(v)]!r} and {k!r}")
                pairs[int(v)] = k
        else:
            raise BlackboxCamError(f"{source}: a JSON object of labels must map indices to names ({{\"0\": \"cat\"}}, "
                                   "Hugging Face's id2label) or names to indices ({\"cat\": 0}, Keras' class_indices)")
        if sorted(pairs) != list(range(len(pairs))):
            missing = sorted(set(range(max(pairs) + 1)) - set(pairs))[:5]
            raise BlackboxCamError(f"{source}: {fmt}: indices must be 0..{len(pairs) - 1}, each once; "
                                   f"{'missing ' + ', '.join(map(str, missing)) if missing else 'some are negative'}")
        return [str(pairs[i]) for i in range(len(pairs))], fmt
    return [ln.strip() for ln in t.splitlines() if ln.strip()], "one name per line"


def _is_index(v: object) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 0
    return isinstance(v, str) and v.strip().isdigit()


def read_labels_file(path: Path, num_classes: int, *, with_format: bool = False) -> list[str] | tuple[list[str], str]:
    """Class names from a labels file in any of :data:`LABEL_FORMATS` (detected, see
    :func:`labels_from_text`); the count must match the model's classes. ``with_format``: also
    return the format read (said by ``explain`` and ``verify``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BlackboxCamError(f"{path}: cannot read labels ({e.strerror})") from None
    except UnicodeDecodeError:
        raise BlackboxCamError(f"{path}: labels file is not UTF-8 text; save it as UTF-8, one name per line") from None
    names, fmt = labels_from_text(text, str(path))
    if len(names) != num_classes:
        raise BlackboxCamError(f"{path}: read as {fmt}: {len(names)} labels but the model has {num_classes} classes")
    return (names, fmt) if with_format else names
