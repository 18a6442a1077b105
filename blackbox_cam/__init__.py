"""blackbox-cam: explain ONNX image classifiers without their source code.

Python API in three lines::

    from blackbox_cam import Classifier, explain_image, load_image
    clf = Classifier("models/efficientnet_lite0.onnx")
    result = explain_image(clf, load_image("models/images/chelsea.png"), "decam", seed=0)

``result.saliency`` is a float32 map at the image's size with values in [0, 1].
"""
from __future__ import annotations

from ._version import __version__  # noqa: E402

from .errors import BlackboxCamError, BudgetExceeded  # noqa: E402
from .explainer.pipeline import Result, explain_image, resolve_target  # noqa: E402
from .io.images import load_image  # noqa: E402
from .methods import METHODS, Explanation  # noqa: E402
from .model.runtime import Classifier  # noqa: E402

__all__ = ["BlackboxCamError", "BudgetExceeded", "Classifier", "Explanation", "METHODS", "Result",
           "explain_image", "load_image", "resolve_target", "__version__"]
