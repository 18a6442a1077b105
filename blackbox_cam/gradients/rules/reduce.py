"""Reductions: ReduceMean, ReduceSum (axes as attribute or input, keepdims 0 or 1)."""
from __future__ import annotations

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients.rules._context import Grad
from blackbox_cam.gradients.rules._helpers import normalize_axis
from blackbox_cam.gradients.rules.pooling import mean_count
from blackbox_cam.gradients.rules._registry import vjp


def _axes(g: Grad) -> list[int] | None:
    """Reduced axes (normalised), or None for 'all axes'."""
    rank = g.rank(g.I(0))
    if g.I(1):
        value = g.constant(g.I(1))
        if value is None:
            raise BlackboxCamError(
                f"{g.node.op_type} node '{g.node.name}' takes its axes from a computed tensor; "
                "only constant axes are supported")
        axes = [int(a) for a in value.reshape(-1)]
    elif g.node.op_type == "ReduceMean" and g.attr("axes") is not None:
        axes = list(g.attr("axes"))
    else:
        axes = []
    if not axes:
        return None if not g.attr("noop_with_empty_axes") else []
    return sorted(normalize_axis(a, rank) for a in axes)


@vjp("ReduceMean")
@vjp("ReduceSum")
def reduce(g: Grad) -> None:
    x = g.I(0)
    axes = _axes(g)
    dy = g.GO(0)
    if axes == []:  # no-op reduction
        g.op("Identity", dy, out=g.GI(0))
        return
    if not g.attr("keepdims"):
        if axes is None:
            axes = list(range(g.rank(x)))
        dy = g.op("Unsqueeze", dy, g.ints(axes))
    spread = g.op("Expand", dy, g.op("Shape", x))
    if g.node.op_type == "ReduceSum":
        g.op("Identity", spread, out=g.GI(0))
    else:
        g.op("Div", spread, mean_count(g, x, g.O(0)), out=g.GI(0))
