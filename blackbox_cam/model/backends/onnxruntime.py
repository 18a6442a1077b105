"""ONNX Runtime: the default backend (a core dependency), on CPU or on CUDA (onnxruntime-gpu).

On CPU, worker threads do not spin between runs: between two batches our Numba kernels
compose the next one on the same cores, and spinning threads would only steal their time.
CUDA is used only where its provider really initialises (:func:`cuda_works`, probed once per
process on a one-node model; onnxruntime-gpu lists the provider even on machines without a GPU).
"""
from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from typing import Iterator, Mapping, Sequence

import numpy as np

from ._base import BackendError, Session, TensorInfo, first_line
from ._registry import register

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
           "tensor(double)": np.float64, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
           "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence onnxruntime's C++ log lines (CUDA provider probing prints errors on CPU-only machines)."""
    try:
        fd = os.dup(2)
    except OSError:  # no real stderr (e.g. some notebooks)
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


def _options(threads: int | None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        so.intra_op_num_threads = int(threads)
    return so


def _cuda_session(payload: bytes, threads: int | None):
    """A CUDA session, or ``None`` when the provider does not initialise."""
    import onnxruntime as ort
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    with _quiet_stderr():
        old = ort.get_default_logger_severity() if hasattr(ort, "get_default_logger_severity") else 2
        ort.set_default_logger_severity(4)
        try:
            sess = ort.InferenceSession(payload, _options(threads),
                                        providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        except Exception as e:
            raise BackendError(f"ONNX Runtime (CUDA) cannot load the model ({first_line(e)})") from None
        finally:
            ort.set_default_logger_severity(old)
    return sess if "CUDAExecutionProvider" in sess.get_providers() else None


@functools.lru_cache(maxsize=1)
def cuda_works() -> bool:
    """Whether ONNX Runtime's CUDA provider initialises here (probed once on a one-node model)."""
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    g = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "probe", [x],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    try:
        return _cuda_session(m.SerializeToString(), None) is not None
    except BackendError:
        return False


def _info(args) -> list[TensorInfo]:
    return [TensorInfo(a.name, tuple(d if isinstance(d, int) and d > 0 else None for d in (a.shape or [])),
                       np.dtype(_DTYPES.get(a.type, np.float32))) for a in args]


@register
class OrtSession(Session):
    """An ``onnxruntime.InferenceSession`` behind the backend interface."""

    name = "onnxruntime"
    devices = ("cpu", "cuda")
    package = "onnxruntime"

    def __init__(self, sess, device: str, threads: int | None) -> None:
        import onnxruntime as ort
        super().__init__(device, threads, ort.__version__, _info(sess.get_inputs()), _info(sess.get_outputs()))
        self.session = sess
        self.providers = tuple(sess.get_providers())

    @classmethod
    def available(cls) -> bool:
        return True  # a core dependency (onnxruntime or onnxruntime-gpu)

    @classmethod
    def works_on(cls, device: str) -> bool:
        return device == "cpu" or (device == "cuda" and cuda_works())

    @classmethod
    def compile(cls, payload: bytes, device: str, threads: int | None = None) -> OrtSession:
        import onnxruntime as ort
        if device == "cuda":
            sess = _cuda_session(payload, threads)
            if sess is None:
                raise BackendError("the CUDA execution provider did not initialise (needs onnxruntime-gpu "
                                   "with matching CUDA/cuDNN and a GPU); use --device cpu or auto")
            return cls(sess, "cuda", threads)
        try:
            sess = ort.InferenceSession(payload, _options(threads), providers=["CPUExecutionProvider"])
        except Exception as e:
            raise BackendError(f"ONNX Runtime cannot load the model ({first_line(e)})") from None
        return cls(sess, "cpu", threads)

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None if output_names is None else list(output_names), dict(feeds))

    def settings(self) -> dict:
        return {"providers": list(self.providers)}
