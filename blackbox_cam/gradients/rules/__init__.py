"""VJP rules, one module per op family; importing this package registers them all."""
from blackbox_cam.gradients.rules import (  # noqa: F401  (registration side effects)
    activation, conv, elementwise, matmul, normalization, pooling, reduce, resize, shape)
from blackbox_cam.gradients.rules._context import GraphFacts, Grad
from blackbox_cam.gradients.rules._registry import RULES, supported_ops, vjp

__all__ = ["Grad", "GraphFacts", "RULES", "supported_ops", "vjp"]
