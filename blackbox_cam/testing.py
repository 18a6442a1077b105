"""The evidence gate inside a team's own test suite.

::

    from blackbox_cam.testing import assert_evidence

    def test_model_ignores_watermark():
        assert_evidence("models/clever_hans/clean.onnx", ["models/clever_hans/images/field_0_square.png"],
                        forbid="models/clever_hans/timestamp_mask.png", method="gradcam")

:func:`assert_evidence` runs the same rule as ``blackbox-cam gate`` (:mod:`blackbox_cam.jobs.gate.job`)
and raises :class:`AssertionError` listing every failing image with its measured share, so
pytest (or unittest) shows why. It returns the :class:`~blackbox_cam.jobs.gate.job.GateReport` for
further checks.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import BlackboxCamError
from .jobs.gate.job import MAX_FAIL_RATE, MAX_SHARE, MIN_SHARE, GateReport, GateRule, run_gate
from .jobs.gate.regions import Region, parse_region



def as_regions(spec: Any) -> list[Region]:
    """``None``, one region or a list of them -> :class:`Region` list.

    A region is a box string ``"x0,y0,x1,y1"``, a mask file path, a :class:`Region`, a box tuple
    ``(x0, y0, x1, y1)`` or a boolean mask array (``True`` = region).
    """
    if spec is None:
        return []
    if isinstance(spec, (str, os.PathLike, Region, np.ndarray)) or (
            isinstance(spec, tuple) and len(spec) == 4 and all(isinstance(v, (int, np.integer)) for v in spec)):
        spec = [spec]
    out = []
    for s in spec:
        if isinstance(s, Region):
            out.append(s)
        elif isinstance(s, np.ndarray):
            m = np.asarray(s, bool)
            if m.ndim != 2 or not m.any():
                raise BlackboxCamError(f"a mask array must be 2-D with at least one True pixel, got shape {m.shape}")
            out.append(Region(f"mask array {m.shape[1]}x{m.shape[0]}", mask=m))
        elif isinstance(s, tuple):
            out.append(parse_region(",".join(str(int(v)) for v in s)))
        else:
            out.append(parse_region(s if isinstance(s, str) else Path(s)))
    return out


def assert_evidence(model: Any, images: Iterable[Any], *, forbid: Any = None, require: Any = None,
                    max_share: float = MAX_SHARE, min_share: float = MIN_SHARE,
                    max_fail_rate: float = MAX_FAIL_RATE, method: str | Sequence[str] = "decam",
                    target: str | int | None = None, budget: int | None = None, seed: int = 0,
                    options: dict[str, Any] | None = None, **classifier_kwargs: Any) -> GateReport:
    """Assert that ``model``'s evidence on ``images`` stays out of ``forbid`` (and inside ``require``).

    Parameters
    ----------
    model : a path to an ``.onnx`` file or a :class:`~blackbox_cam.model.runtime.Classifier`.
    images : image files, folders, manifest CSVs, or ``H x W x 3`` RGB arrays (0..255).
    forbid, require : regions (see :func:`as_regions`); several are united.
    max_share, min_share, max_fail_rate : the thresholds of :class:`~blackbox_cam.jobs.gate.job.GateRule`.
    method : a registered method name, or several.
    target, budget, seed : as for :func:`~blackbox_cam.explainer.pipeline.explain_image`.
    options : method options, e.g. ``{"layer": "/relu4/Relu"}`` or ``{"grid": 6}``.
    classifier_kwargs : passed to :class:`~blackbox_cam.model.runtime.Classifier` when ``model`` is a path.

    Raises
    ------
    AssertionError
        the gate failed; the message lists each failing image and why.
    BlackboxCamError
        a usage error (bad region, threshold, method) before any model query.
    """
    __tracebackhide__ = True  # pytest shows the assertion, not this helper's frames
    from .model.runtime import Classifier

    rule = GateRule(max_share=max_share, min_share=min_share, max_fail_rate=max_fail_rate)
    methods = [method] if isinstance(method, str) else list(method)
    clf = model if hasattr(model, "prepare") else Classifier(model, **classifier_kwargs)
    report = run_gate(clf, list(images), methods, forbid=as_regions(forbid), require=as_regions(require),
                      rule=rule, target=target, budget=budget, seed=seed, options=options)
    if not report.passed:
        lines = [report.summary()]
        for c in report.cases:
            if c.error is not None:
                lines.append(f"  {c.image} [{c.method}]: not checked: {c.error}")
            elif not c.passed:
                lines.append(f"  {c.image} [{c.method}, {c.label}]: {'; '.join(c.check.reasons)}")
        raise AssertionError("\n".join(lines))
    return report
