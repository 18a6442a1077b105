"""The registry of backends and the one function that compiles a model: :func:`compile_model`."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ...errors import BlackboxCamError

if TYPE_CHECKING:
    from ._base import ModelLike, Session

BACKENDS: dict[str, type[Session]] = {}
DEVICES = ("auto", "cpu", "cuda")
#: Why ``--backend auto`` is ONNX Runtime, printed with the backend line (see :func:`resolve`).
AUTO_REASON = "auto picks ONNX Runtime: faster than OpenVINO on the CPUs measured, see docs/backends.md"
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

    ``auto``: ONNX Runtime, on CUDA when its CUDA provider initialises (and ``device`` is not
    ``cpu``), else on CPU. OpenVINO is used only when asked for by name: on the CPUs measured
    (``bench/bench_backends.py``, ``docs/backends.md``) it ran the bundled model at 0.91x ONNX
    Runtime's throughput and RISE / DE-CAM 8-10 % slower, so picking it by default cost time.
    """
    _check(backend, device)
    if backend == "auto":
        ort = BACKENDS["onnxruntime"]
        return "onnxruntime", ("cuda" if device == "cuda" or (device == "auto" and ort.works_on("cuda")) else "cpu")
    cls = BACKENDS[backend]
    if not cls.available():
        raise BlackboxCamError(f"--backend {backend}: the {cls.package} package is not installed; "
                               f"install it with {install_hint(backend)}, or use --backend onnxruntime")
    if device == "auto":
        device = "cuda" if "cuda" in cls.devices and cls.works_on("cuda") else "cpu"
    if device not in cls.devices:
        raise BlackboxCamError(f"--backend {backend} runs on {', '.join(cls.devices)}, not {device}; "
                               "use --device cpu, or --backend onnxruntime for CUDA")
    return backend, device


def compile_model(model: ModelLike, backend: str = "auto", device: str = "auto", *,
                  threads: int | None = None) -> Session:
    """Compile ``model`` (``onnx.ModelProto``, bytes or a path) on the backend and device
    :func:`resolve` picks; a backend that cannot read or compile it raises its own message as one
    :class:`~blackbox_cam.model.backends.BackendError` line."""
    from ._base import model_bytes
    name, dev = resolve(backend, device)
    return BACKENDS[name].compile(model_bytes(model), dev, threads)
