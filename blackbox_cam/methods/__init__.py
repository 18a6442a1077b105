"""Saliency methods, all under one contract (:mod:`blackbox_cam.methods.base`).

Importing this package registers every method: black-box ``decam``, ``rise``, ``occlusion``, ``drise``
and the white-box Grad-CAM family (``gradcam``, ``gradcam++``, ``hirescam``, ``xgradcam``,
``layercam``) with the attention methods ``rollout`` and ``attention-grad``, and the
gradient-free ``eigencam``. Each declares its options once (:mod:`blackbox_cam.methods.options`).
"""
from .base import (METHODS, Call, Explanation, MethodOutput, MethodSpec, bind_all,  # noqa: F401
                   get_method, parse_methods, register, split_options)
from .options import Option  # noqa: F401
from .targets import ClassTarget, DetectionTarget, as_target  # noqa: F401
from . import decam, occlusion, rise  # noqa: F401, I001  (registration: black-box first, in this order)
from . import drise  # noqa: F401, E402  (issue 27: detections)
from . import gradcam  # noqa: F401, E402
from . import attention_grad, rollout  # noqa: F401, E402  (issue 19: attention of vision transformers)
from . import eigencam  # noqa: F401, E402  (issue 27: class-blind, for detectors and classifiers)

__all__ = ["METHODS", "Call", "ClassTarget", "DetectionTarget", "Explanation", "as_target", "MethodOutput", "MethodSpec", "Option", "bind_all", "get_method",
           "parse_methods", "register", "split_options"]
