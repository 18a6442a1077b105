"""Reverse-mode autodiff on ONNX graphs, emitting standard ai.onnx ops.

Grad-CAM needs activations and their gradients; ONNX files hold only the forward pass. This
package exposes chosen intermediate tensors as outputs and appends their gradients (of
``sum(seed * logits)``) as a second set of standard nodes that ONNX Runtime runs at full speed.

    model = prepare_model("model.onnx")
    layer = next(info.name for info in candidate_layers(model) if info.is_default)
    gm = build_gradient_model(model, [layer])
    out = gm.run(None, images, one_hot_targets)   # {layer: A, 'grad/'+layer: dA}

One VJP rule per op type lives in :mod:`blackbox_cam.gradients.rules`; see ``supported_ops()``.
"""
from blackbox_cam.gradients._build import GradientModel, activation_model, build_gradient_model
from blackbox_cam.gradients._heads import DetectorLevel, detector_levels, level_of
from blackbox_cam.gradients._layers import LayerInfo, candidate_layers
from blackbox_cam.gradients._prepare import TARGET_OPSET, prepare_model
from blackbox_cam.gradients._tokens import TokenFacts, TokenGrid, mark_tokens, parse_tokens, token_facts
from blackbox_cam.gradients.rules import supported_ops

__all__ = ["GradientModel", "activation_model", "LayerInfo", "TARGET_OPSET", "build_gradient_model",
           "candidate_layers", "prepare_model", "supported_ops", "TokenFacts", "TokenGrid",
           "mark_tokens", "parse_tokens", "token_facts", "DetectorLevel", "detector_levels", "level_of"]
