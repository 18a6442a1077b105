"""blackbox-cam: explain ONNX image classifiers without their source code.

Python API in two lines::

    import blackbox_cam as bc
    result = bc.explain("models/efficientnet_lite0.onnx", "models/images/chelsea.png", "decam", seed=0)

``result.saliency`` is a float32 map at the image's size with values in [0, 1]; ``result``
shows itself in a notebook (``result.show()``, ``result.overlay()``) and ``result.save(folder)``
writes what ``blackbox-cam explain`` writes. A folder or a list of images gives a list of
results; :func:`plot_methods` draws several methods side by side. The lower-level pieces stay:
``Classifier``, ``explain_image(clf, load_image(path), "decam")``.

Detectors: ``bc.detect("yolov8n.onnx", "street.jpg")`` (boxes drawn when shown),
``bc.Detector(path).candidates(x)`` (every box before NMS), ``bc.open_model(path)`` (a
classifier or a detector, as the model reader decides).
"""
from __future__ import annotations

from ._version import __version__  # noqa: E402

from .errors import BlackboxCamError, BudgetExceeded  # noqa: E402
from .explainer.pipeline import Result, explain_image, resolve_target  # noqa: E402
from .io.images import load_image  # noqa: E402
from .methods import METHODS, Explanation  # noqa: E402
from .model.runtime import Classifier  # noqa: E402
from .model.detector import Detector  # noqa: E402
from .model.detections import Candidates, Detections  # noqa: E402
from .model.open import open_model  # noqa: E402
from .api import detect, explain, load_model, plot_methods  # noqa: E402

__all__ = ["BlackboxCamError", "BudgetExceeded", "Candidates", "Classifier", "Detections", "Detector", "Explanation",
           "METHODS", "Result", "detect", "explain", "explain_image", "load_model", "open_model", "plot_methods",
           "load_image", "resolve_target", "__version__"]
