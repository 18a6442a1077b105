"""OpenVINO on CPU: the ``openvino`` extra (the runtime package, not openvino-dev).

The ONNX file is read by OpenVINO's own ONNX frontend from memory and compiled for its CPU
plugin with ``INFERENCE_PRECISION_HINT=f32``, so no layer silently runs in bf16 on CPUs that
have it and scores stay within 1e-4 of ONNX Runtime's. Batches run synchronously on one infer
request with the ``LATENCY`` hint (one stream using every core) and without CPU pinning;
``docs/backends.md`` has the measurements behind these settings and :meth:`auto_batch`
(``bench/bench_backends.py --sweep``). A dynamic batch dimension stays dynamic.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Mapping, Sequence

import numpy as np

from ._base import BackendError, Session, TensorInfo
from ._ov_shared_weights import unshare_transposed_weights
from ._registry import register

# Pinning threads to cores lost 10-30 % of the throughput on a shared 2-core machine (a pinned
# thread cannot move off a core another process is using) and gained nothing measurable;
# THROUGHPUT (a stream per core, the batch split over asynchronous requests) did the same work
# per CPU-second as LATENCY, so the simpler synchronous path is kept.
CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
_NOISE = re.compile(r"^(Exception from |Check '.*' failed at |To facilitate|Summary:)")


@functools.lru_cache(maxsize=1)
def _core():
    import openvino as ov
    return ov.Core()


def message(e: BaseException, limit: int = 300) -> str:
    """OpenVINO's multi-line exception text as one line: the lines that say what failed."""
    lines = [ln.strip().lstrip("- ").strip() for ln in str(e).splitlines()]
    said = [ln for ln in lines if ln and not _NOISE.match(ln)]
    text = " ".join(said) or type(e).__name__
    if len(text) <= limit:
        return text
    # whole clauses only (a message cut mid-word read as a bug of its own, issue 19)
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("; "), cut.rfind(": "))
    return cut[:end] if end > limit // 3 else cut.rsplit(" ", 1)[0]


def _info(ports) -> list[TensorInfo]:
    out = []
    for p in ports:
        shape = p.get_partial_shape()
        dims = tuple(d.get_length() if d.is_static else None for d in shape) if shape.rank.is_static else ()
        out.append(TensorInfo(p.get_any_name(), dims, np.dtype(p.get_element_type().to_dtype())))
    return out


@register
class OpenVinoSession(Session):
    """An OpenVINO ``CompiledModel`` and one infer request behind the backend interface."""

    name = "openvino"
    devices = ("cpu",)
    package = "openvino"
    extra = "openvino"

    def __init__(self, compiled, threads: int | None) -> None:
        import openvino as ov
        super().__init__("cpu", threads, ov.__version__.split("-")[0], _info(compiled.inputs), _info(compiled.outputs))
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self._out = {n: i for i, p in enumerate(compiled.outputs) for n in p.get_names()}
        self._in = {n: i for i, p in enumerate(compiled.inputs) for n in p.get_names()}

    @classmethod
    def compile(cls, payload: bytes, device: str, threads: int | None = None) -> OpenVinoSession:
        config: dict[str, Any] = dict(CONFIG)
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            core = _core()
            payload = unshare_transposed_weights(payload)  # an OpenVINO bug: see that module
            compiled = core.compile_model(core.read_model(payload), "CPU", config)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with multi-line text
            raise BackendError(f"OpenVINO cannot read the model ({message(e)})") from None
        return cls(compiled, threads)

    def input(self, name: str) -> TensorInfo:
        """By any of the tensor's names: OpenVINO keeps several per port and reports one of them."""
        i = self._in.get(name)
        return self.inputs[i] if i is not None else super().input(name)

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        inputs = {}
        for name, value in feeds.items():
            i = self._in[name]
            inputs[i] = np.ascontiguousarray(value, dtype=self.inputs[i].dtype)
        try:
            res = self.request.infer(inputs, share_inputs=True, share_outputs=False)
        except Exception as e:
            raise RuntimeError(message(e)) from None
        idx = range(len(self.outputs)) if output_names is None else [self._out[n] for n in output_names]
        return [res[self.compiled.outputs[i]] for i in idx]

    def auto_batch(self, bytes_per_image: int) -> int:
        """~16 MB of input per call (27 images at 224 x 224): OpenVINO's CPU plugin gains from
        larger batches longer than ONNX Runtime does (220 -> 319 images/s from batch 1 to 32 on
        EfficientNet-Lite0, quiet 2-core machine, issue 13), while memory stays bounded."""
        return int(min(128, max(1, 2 ** 24 // max(1, bytes_per_image))))

    def settings(self) -> dict:
        c = self.compiled
        return {"hint": str(c.get_property("PERFORMANCE_HINT")).split(".")[-1],
                "streams": int(c.get_property("NUM_STREAMS")),
                "threads": int(c.get_property("INFERENCE_NUM_THREADS")),
                "pinning": bool(c.get_property("ENABLE_CPU_PINNING")),
                "precision": c.get_property("INFERENCE_PRECISION_HINT").get_type_name()}
