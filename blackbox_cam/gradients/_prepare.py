"""Load a model, bring it to a supported opset, and infer shapes."""
from __future__ import annotations

import os

import onnx
import onnx.inliner
import onnx.shape_inference
import onnx.version_converter

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients._graph import default_opset

TARGET_OPSET = 17  # ReduceSum/Split/Unsqueeze axes as inputs, ScatterElements reduction='add'
_ORT_DOMAINS = {"com.microsoft", "com.microsoft.nchwc", "com.microsoft.mlfeaturizers"}


def prepare_model(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    """Return a new, shape-inferred copy of ``model`` at opset >= 17.

    Models below opset 17 are converted with ``onnx.version_converter``; newer ones are kept.
    Local functions are inlined. Files optimised by ONNX Runtime (com.microsoft ops) are refused:
    pass the original export. The input model is not modified.
    """
    if isinstance(model, (str, os.PathLike)):
        try:
            model = onnx.load(os.fspath(model))
        except Exception as exc:  # noqa: BLE001 - onnx raises many kinds
            raise BlackboxCamError(f"cannot read ONNX model '{os.fspath(model)}': {exc}") from exc
    elif isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
    else:
        raise BlackboxCamError(
            f"prepare_model needs an onnx.ModelProto or a path, not {type(model).__name__}")
    foreign = sorted({n.domain for n in model.graph.node} & _ORT_DOMAINS)
    if foreign:
        raise BlackboxCamError(
            f"the model uses {', '.join(foreign)} ops: it looks optimised by ONNX Runtime; "
            "pass the original exported .onnx file instead")
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    opset = default_opset(model)
    if opset < TARGET_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, TARGET_OPSET)
        except Exception as exc:  # noqa: BLE001
            raise BlackboxCamError(
                f"cannot convert the model from opset {opset} to {TARGET_OPSET}: {exc}; "
                "re-export it at opset >= 17") from exc
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001
        raise BlackboxCamError(f"shape inference failed on the model: {exc}") from exc
    return model
