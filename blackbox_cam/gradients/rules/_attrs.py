"""Attribute defaults of the forward ops the rules read, in one place (from the ONNX spec)."""
from __future__ import annotations

_CONV = {"auto_pad": "NOTSET", "group": 1, "dilations": None, "strides": None, "pads": None,
         "kernel_shape": None}

DEFAULTS: dict[str, dict[str, object]] = {
    "Conv": _CONV,
    "MaxPool": {**_CONV, "ceil_mode": 0, "storage_order": 0},
    "AveragePool": {**_CONV, "ceil_mode": 0, "count_include_pad": 0},
    "BatchNormalization": {"epsilon": 1e-5, "training_mode": 0},
    "LayerNormalization": {"axis": -1, "epsilon": 1e-5, "stash_type": 1},
    "Gemm": {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0},
    "Softmax": {"axis": -1},
    "LogSoftmax": {"axis": -1},
    "HardSigmoid": {"alpha": 0.2, "beta": 0.5},
    "LeakyRelu": {"alpha": 0.01},
    "Elu": {"alpha": 1.0},
    "Gelu": {"approximate": "none"},
    "Transpose": {"perm": None},
    "Concat": {},
    "Split": {"axis": 0, "split": None, "num_outputs": None},
    "Gather": {"axis": 0},
    "Flatten": {"axis": 1},
    "ReduceMean": {"keepdims": 1, "noop_with_empty_axes": 0, "axes": None},
    "ReduceSum": {"keepdims": 1, "noop_with_empty_axes": 0},
    "Pad": {"mode": "constant"},
    "Cast": {},
    "LRN": {"alpha": 1e-4, "beta": 0.75, "bias": 1.0},
}
