"""The registry of backends and the one function that compiles a model: :func:`compile_model`."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import BlackboxCamError

if TYPE_CHECKING:
    from ._base import ModelLike, Session

BACKENDS: dict[str, type[Session]] = {}
DEVICES = ("auto", "cpu", "cuda")
log = logging.getLogger("blackbox_cam")


def register(cls: type[Session]) -> type[Session]:
    """Class decorator: make a :class:`Session` subclass selectable as ``--backend <cls.name>``."""
    if cls.name in BACKENDS:
        raise RuntimeError(f"two backends registered as {cls.name}")
    BACKENDS[cls.name] = cls
    return cls


def choices() -> tuple[str, ...]:
    """What ``--backend`` accepts: ``auto`` and every registered backend."""
    return ("auto", *BACKENDS)


def install_hint(name: str) -> str:
    """How to install backend ``name``: its extra, or its package."""
    cls = BACKENDS[name]
    if cls.extra:
        return f'pip install "blackbox-cam[{cls.extra}]" (or pip install {cls.package})'
    return f"pip install {cls.package}"


def _check(backend: str, device: str) -> None:
    if backend not in choices():
        raise BlackboxCamError(f"unknown backend {backend!r}; choose one of {', '.join(choices())}")
    if device not in DEVICES:
        raise BlackboxCamError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")


def resolve(backend: str = "auto", device: str = "auto") -> tuple[str, str]:
    """The ``(backend, device)`` that ``compile_model`` tries first.

    ``auto``: ONNX Runtime on CUDA when its CUDA provider initialises (and ``device`` is not
    ``cpu``), else OpenVINO on CPU when it is installed, else ONNX Runtime on CPU.
    """
    _check(backend, device)
    from .onnxruntime import cuda_works
    if backend == "auto":
        if device == "cuda" or (device == "auto" and cuda_works()):
            return "onnxruntime", "cuda"
        ov = BACKENDS.get("openvino")
        return ("openvino" if ov is not None and ov.available() else "onnxruntime"), "cpu"
    cls = BACKENDS[backend]
    if not cls.available():
        raise BlackboxCamError(f"--backend {backend}: the {cls.package} package is not installed; "
                               f"install it with {install_hint(backend)}, or use --backend onnxruntime")
    if device == "auto":
        device = "cuda" if "cuda" in cls.devices and cuda_works() else "cpu"
    if device not in cls.devices:
        raise BlackboxCamError(f"--backend {backend} runs on {', '.join(cls.devices)}, not {device}; "
                               "use --device cpu, or --backend onnxruntime for CUDA")
    return backend, device


def compile_model(model: ModelLike, backend: str = "auto", device: str = "auto", *,
                  threads: int | None = None) -> Session:
    """Compile ``model`` (``onnx.ModelProto``, bytes or a path) on the backend and device
    :func:`resolve` picks.

    A model the automatically chosen OpenVINO cannot read or compile falls back to ONNX
    Runtime on CPU, with one log line saying so; a backend asked for by name raises its own
    message as one :class:`~blackbox_cam.backends.BackendError` line instead.
    """
    from ._base import BackendError, model_bytes
    name, dev = resolve(backend, device)
    payload = model_bytes(model)
    try:
        return BACKENDS[name].compile(payload, dev, threads)
    except BackendError as e:
        if backend != "auto" or name == "onnxruntime":
            raise
        log.warning("%s; using onnxruntime on CPU instead", e)
        return BACKENDS["onnxruntime"].compile(payload, "cpu", threads)
