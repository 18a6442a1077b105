"""Inference backends behind one small interface, chosen per machine.

``onnxruntime`` (:mod:`.onnxruntime`, CPU or CUDA) and ``openvino`` (:mod:`.openvino`, CPU; the
optional ``openvino`` extra) compile the same ONNX file into a :class:`Session`: input/output
facts, ``run(output_names, feeds)`` on a batch, a default batch size and a one-line
description for ``explain.json``. :func:`compile_model` is the one place that makes a session;
``backend="auto"`` takes ONNX Runtime's CUDA provider when a GPU initialises, else OpenVINO
when installed, else ONNX Runtime on CPU. :func:`run_batched` is the fixed-batch runner.

A new backend is one file with a registered :class:`Session` subclass, imported below.
"""
from __future__ import annotations

from ._base import BackendError, Session, TensorInfo, first_line, model_bytes, run_batched
from ._registry import AUTO_REASON, BACKENDS, DEVICES, choices, log, compile_model, install_hint, register, resolve
from . import onnxruntime as _onnxruntime  # noqa: E402,F401  (each import registers a backend)
from . import openvino as _openvino  # noqa: E402,F401

CHOICES = choices()

__all__ = ["BACKENDS", "BackendError", "CHOICES", "DEVICES", "Session", "TensorInfo", "choices", "compile_model",
           "first_line", "install_hint", "log", "model_bytes", "register", "resolve", "run_batched"]
