"""The vendor's scores, as a CSV: one score per (image, class) or a whole score row per image.

* long form, header ``image,class,score`` (or ``probability`` / ``logit`` instead of ``score``
  to say which it is): one row per image and class; ``class`` is an index or a label;
* wide form, header ``image,<class>,<class>,...``: the vendor's whole output row per image
  (probabilities, or raw scores that are soft-maxed like the model's own).

``score`` is read as a probability when the model outputs probabilities, or when an image's
rows cover every class and sum to 1; otherwise as the model's raw output (a logit).
Image paths are relative to the CSV's folder (or ``--images``).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import BlackboxCamError, existing_file


@dataclass(frozen=True)
class Expected:
    """One image's expected scores: ``classes[i]`` has ``values[i]``; ``kind`` is ``probability``,
    ``logit`` (raw outputs, one per class given) or ``row`` (the whole raw output row)."""

    image: Path
    name: str
    classes: tuple[int, ...]
    values: tuple[float, ...]
    kind: str


def _class_index(clf, name: str, where: str) -> int:
    name = name.strip()
    numeric = bool(clf.labels) and all(n.strip().lstrip("-").isdigit() for n in clf.labels)
    if numeric and name in [n.strip() for n in clf.labels]:  # labels that are all numbers ("0", "180"): the label
        idx = [n.strip() for n in clf.labels].index(name)
    elif name.lstrip("-").isdigit():
        idx = int(name)
    elif clf.labels and name.lower() in [n.lower() for n in clf.labels]:
        idx = [n.lower() for n in clf.labels].index(name.lower())
    else:
        raise BlackboxCamError(f"{where}: class {name!r} is neither an index nor one of the model's labels")
    if not 0 <= idx < clf.num_classes:
        raise BlackboxCamError(f"{where}: class {idx} is out of range: the model has {clf.num_classes} classes")
    return idx


def _float(v: str, where: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise BlackboxCamError(f"{where}: {v!r} is not a number") from None
    if not np.isfinite(x):
        raise BlackboxCamError(f"{where}: {v!r} is not a finite number")
    return x


def read_expected(path: str | Path, clf, images: str | Path | None = None) -> list[Expected]:
    """The expected scores in ``path`` for ``clf``'s classes, images resolved and checked to exist."""
    p = existing_file(path, "a CSV of expected scores")
    base = Path(images) if images is not None else p.parent
    with open(p, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows or "image" not in [h.strip() for h in rows[0]]:
        raise BlackboxCamError(f"{p}: the first line must be a header with an 'image' column "
                               "(image,class,score or image,<class>,<class>,...)")
    head = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise BlackboxCamError(f"{p}: no rows under the header")
    col = {h: i for i, h in enumerate(head)}
    value_col = next((h for h in ("score", "probability", "logit") if h in col), None)
    out: dict[str, dict] = {}
    for n, r in enumerate(body, start=2):
        where = f"{p}:{n}"
        if len(r) != len(head):
            raise BlackboxCamError(f"{where}: {len(r)} fields, the header has {len(head)}")
        name = r[col["image"]].strip()
        e = out.setdefault(name, {"classes": [], "values": []})
        if value_col is not None and "class" in col:
            e["classes"].append(_class_index(clf, r[col["class"]], where))
            e["values"].append(_float(r[col[value_col]], where))
        else:
            cls = [h for h in head if h != "image"]
            if len(cls) != clf.num_classes:
                raise BlackboxCamError(f"{p}: {len(cls)} score columns but the model has {clf.num_classes} classes; "
                                       "give every class's score, or use image,class,score")
            e["classes"] = list(range(clf.num_classes))
            e["values"] = [_float(r[col[h]], where) for h in cls]
            e["row"] = True
    result = []
    for name, e in out.items():
        img = Path(name) if Path(name).is_absolute() else base / name
        if not img.is_file():
            raise BlackboxCamError(f"{p}: image {name!r} not found (looked for {img}); paths are relative to the "
                                   "CSV's folder, or give --images DIR")
        vals = np.asarray(e["values"], np.float64)
        full = sorted(e["classes"]) == list(range(clf.num_classes))
        sums_to_one = full and bool(np.all((vals >= 0) & (vals <= 1))) and abs(vals.sum() - 1) < 1e-3
        if value_col == "probability" or (value_col == "score" and (clf.outputs_probabilities or sums_to_one)):
            kind = "probability"
        elif e.get("row"):
            kind = "probability" if sums_to_one else "row"
        else:
            kind = "logit"
        if kind == "probability" and not np.all((vals >= 0) & (vals <= 1)):
            raise BlackboxCamError(f"{p}: {name}: probabilities must lie in [0, 1]; name the column 'logit' "
                                   "for raw scores")
        result.append(Expected(img, name, tuple(e["classes"]), tuple(float(v) for v in vals), kind))
    return result
