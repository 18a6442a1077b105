"""The registry of vector-Jacobian product (VJP) rules, one per ONNX op type.

A rule is a function ``rule(g: Grad) -> None`` registered with :func:`vjp`. It reads the forward
node through the small vocabulary of :class:`~blackbox_cam.gradients.rules._context.Grad`
(``I(i)``/``O(i)`` forward input/output names, ``GO(i)`` the gradient of output *i*, ``GI(i)``
the name to give the gradient of input *i*) and emits *new* nodes with ``g.op``; the nodes are
collected in ``g.nodes`` and the forward graph is never touched. A rule computes ``GI(i)`` only
where ``g.needs(i)``.
"""
from __future__ import annotations

from typing import Callable

RULES: dict[str, Callable] = {}


def vjp(op_type: str):
    """Register the decorated function as the VJP rule of ``op_type`` (stack for aliases)."""

    def register(fn: Callable) -> Callable:
        if op_type in RULES:
            raise RuntimeError(f"two VJP rules registered for {op_type}")
        RULES[op_type] = fn
        return fn

    return register


def supported_ops() -> list[str]:
    """Op types (default ONNX domain) that have a VJP rule, sorted."""
    return sorted(RULES)
