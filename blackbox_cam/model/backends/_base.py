"""What every inference backend provides: a compiled model that runs a batch.

A backend turns an ONNX model (``onnx.ModelProto``, serialized bytes or a path) into a
:class:`Session` for one device. A session knows its input and output tensors
(:class:`TensorInfo`: name, shape with ``None`` for dynamic dims, numpy dtype), runs a batch
with ONNX Runtime's calling convention (``run(output_names, feeds) -> list of arrays``), picks
its own default batch size, and describes itself for ``explain.json``. Everything above this
package (the :class:`~blackbox_cam.model.runtime.Classifier`, the white-box gradient graph, the
metrics through the classifier) talks to a session only, so it never knows which backend runs.

:func:`run_batched` is the one fixed-batch runner: it feeds a session ``step`` rows at a time
and, for a model whose batch dimension is fixed, pads the last call by repeating its last row
and drops the padding from the outputs.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ...errors import BlackboxCamError

ModelLike = Any  # onnx.ModelProto | bytes | str | os.PathLike (onnx is not imported here)


class BackendError(BlackboxCamError):
    """A backend could not read or compile a model; the message is the backend's own, one line."""


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a compiled model: name, shape (``None`` = dynamic) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def fixed_batch(self) -> int | None:
        """The batch dimension if the model fixes it, else ``None``."""
        n = self.shape[0] if self.shape else None
        return n if isinstance(n, int) and n > 0 else None


def model_bytes(model: ModelLike) -> bytes:
    """The serialized ONNX model, whatever form it was given in."""
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        return Path(model).read_bytes()
    return model.SerializeToString()


def first_line(e: BaseException, limit: int = 300) -> str:
    """A backend exception as one line: its first non-empty line, trimmed."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:limit]


class Session(ABC):
    """A model compiled by one backend for one device.

    Subclasses set the class attributes, implement :meth:`compile` and :meth:`run`, and are
    registered with :func:`blackbox_cam.model.backends.register`.
    """

    name: ClassVar[str]  # registry name, e.g. "onnxruntime"
    devices: ClassVar[tuple[str, ...]]  # devices it can run on: "cpu", "cuda"
    package: ClassVar[str]  # the pip distribution that provides it
    extra: ClassVar[str | None] = None  # blackbox-cam extra that installs it (None: a core dependency)

    def __init__(self, device: str, threads: int | None, version: str,
                 inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo]) -> None:
        self.device = device
        self.threads = threads
        self.version = version
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)

    # -- what a backend implements ---------------------------------------------------------------
    @classmethod
    def available(cls) -> bool:
        """Whether the backend's package can be imported."""
        import importlib.util
        return importlib.util.find_spec(cls.package.replace("-", "_")) is not None

    @classmethod
    def works_on(cls, device: str) -> bool:
        """Whether ``device`` really runs here (CUDA: the provider initialises), not just in
        :attr:`devices`. The registry asks this; it never imports a backend module itself."""
        return device == "cpu" and cls.available()

    @classmethod
    @abstractmethod
    def compile(cls, payload: bytes, device: str, threads: int | None = None) -> Session:
        """Compile serialized ONNX ``payload`` for ``device`` (``cpu``/``cuda``); raise
        :class:`BackendError` with the backend's message if it cannot."""

    @abstractmethod
    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """One call: ``feeds`` (input name -> array) in, the named outputs (``None``: all) out."""

    def auto_batch(self, bytes_per_image: int) -> int:
        """Images per call when the user gives no batch size (measured per backend)."""
        return int(min(128, max(1, 2 ** 22 // max(1, bytes_per_image))))  # ~4 MB of input per call

    def settings(self) -> dict[str, Any]:
        """Backend-specific settings worth recording (providers, hints, streams)."""
        return {}

    # -- shared ----------------------------------------------------------------------------------
    def compile_like(self, model: ModelLike) -> Session:
        """Another model (e.g. the gradient graph) on the same backend, device and threads."""
        return type(self).compile(model_bytes(model), self.device, self.threads)

    def input(self, name: str) -> TensorInfo:
        """The input called ``name`` (a backend that renames tensors overrides this)."""
        for info in self.inputs:
            if info.name == name:
                return info
        raise BackendError(f"the compiled model has no input {name!r} (its inputs: "
                           f"{', '.join(i.name for i in self.inputs)})")

    def describe(self) -> str:
        """One line for the user: ``openvino 2026.4.1 on CPU``."""
        return f"{self.name} {self.version} on {self.device.upper()}"

    def record(self) -> dict[str, Any]:
        """What ran the model, for ``explain.json``."""
        return {"name": self.name, "version": self.version, "device": self.device, **self.settings()}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def run_batched(session: Session, feeds: Mapping[str, np.ndarray], outputs: Sequence[str],
                step: int | None = None, *, fixed: bool = False) -> list[np.ndarray]:
    """Run ``session`` on batched ``feeds`` (every array has the same first dim) ``step`` rows per call.

    ``fixed``: the model only takes exactly ``step`` rows, so a short last chunk is padded by
    repeating its last row and the padding is cut off the outputs. Returns one array per output,
    concatenated over the chunks.
    """
    n = len(next(iter(feeds.values())))
    step = int(step or n) or 1
    if n <= step and not (fixed and n < step):
        return [np.asarray(o) for o in session.run(list(outputs), dict(feeds))]
    chunks: list[list[np.ndarray]] = []
    for i in range(0, n, step):
        part = {k: v[i:i + step] for k, v in feeds.items()}
        pad = step - min(step, n - i) if fixed else 0
        if pad:
            part = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) for k, v in part.items()}
        outs = session.run(list(outputs), part)
        chunks.append([np.asarray(o)[:len(o) - pad] for o in outs])
    return [np.concatenate([c[j] for c in chunks]) for j in range(len(outputs))]
