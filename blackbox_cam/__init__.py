"""blackbox-cam: explain ONNX image classifiers without their source code.

Python API in three lines::

    from blackbox_cam import Classifier, explain_image, load_image
    clf = Classifier("models/efficientnet_lite0.onnx")
    result = explain_image(clf, load_image("models/images/chelsea.png"), "decam", seed=0)

``result.saliency`` is a float32 map at the image's size with values in [0, 1].
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import BlackboxCamError, BudgetExceeded  # noqa: E402
from .explain import Result, explain_image, resolve_target  # noqa: E402
from .images import load_image  # noqa: E402
from .methods import METHODS, Explanation  # noqa: E402
from .runtime import Classifier  # noqa: E402

__all__ = ["BlackboxCamError", "BudgetExceeded", "Classifier", "Explanation", "METHODS", "Result",
           "explain_image", "load_image", "resolve_target", "__version__"]
