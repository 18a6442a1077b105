"""``open_model``: a classifier or a detector, as the model reader decides.

The task is decided once by :func:`blackbox_cam.model.signature.read_model` from the graph's
structure (outputs, names, ``metadata_props``) and the sidecar's ``"detector"`` key; the
weights are not needed for that, so the file is read without its external data first, then
opened as a :class:`~blackbox_cam.model.runtime.Classifier` or a
:class:`~blackbox_cam.model.detector.Detector` with the same keyword arguments.
"""
from __future__ import annotations

import os
from typing import Any

import onnx

from ..errors import BlackboxCamError, existing_file
from .detector import Detector
from .runtime import Classifier
from .sidecar import find_sidecar, load_sidecar, translate
from .signature import read_model

#: Keyword arguments only a detector takes.
DETECTOR_ONLY = ("conf", "iou", "max_detections")


def model_task(path: str | os.PathLike, *, sidecar: str | os.PathLike | None = None, output: str | int | None = None,
               layout: str | None = None, input_size: tuple[int, int] | None = None) -> tuple[str, str]:
    """``(task, reason)`` of the model file: ``classifier`` or ``detector`` and the one-line why."""
    p = existing_file(path, "an .onnx model")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as e:
        raise BlackboxCamError(f"{p}: not an ONNX model or the file is corrupt ({type(e).__name__}); "
                               "export it again with torch.onnx.export or tf2onnx") from None
    found = find_sidecar(p, sidecar)
    side = load_sidecar(found)
    pipe = translate(side, str(found or p.with_suffix(".json")))
    sig = read_model(proto, layout=layout or side.get("layout"), input_size=input_size or pipe.input_size,
                     output=output if output is not None else side.get("output"), source=str(p),
                     detector=side.get("detector"))
    return sig.task, sig.task_reason


def open_model(path: str | os.PathLike, **kw: Any) -> Classifier | Detector:
    """A :class:`Classifier` or a :class:`Detector` for ``path``, as the model reader decides
    (``kw``: their keyword arguments; ``conf``/``iou``/``max_detections`` only for a detector)."""
    task, _ = model_task(path, sidecar=kw.get("sidecar"), output=kw.get("output"), layout=kw.get("layout"),
                         input_size=kw.get("input_size"))
    if task == "detector":
        return Detector(path, **kw)
    given = sorted(k for k in DETECTOR_ONLY if k in kw)
    if given:
        raise BlackboxCamError(f"{path}: {', '.join(given)} apply to detectors; this model is a classifier")
    return Classifier(path, **kw)
