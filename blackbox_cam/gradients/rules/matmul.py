"""Matrix products: Gemm (all transA/transB), MatMul (with broadcast batch dims) and two-operand Einsum."""
from __future__ import annotations

from blackbox_cam.errors import BlackboxCamError
from blackbox_cam.gradients.rules._context import Grad
from blackbox_cam.gradients.rules._helpers import unbroadcast
from blackbox_cam.gradients.rules._registry import vjp


@vjp("Gemm")
def gemm(g: Grad) -> None:
    """Y = alpha * op(A) op(B) + beta * C."""
    a, b, dy = g.I(0), g.I(1), g.GO(0)
    ta, tb, alpha = g.attr("transA"), g.attr("transB"), float(g.attr("alpha"))
    if g.needs(0):  # dA = dY op(B)^T, transposed when transA
        if not ta:
            g.op("Gemm", dy, b, alpha=alpha, transB=0 if tb else 1, out=g.GI(0))
        else:
            g.op("Gemm", b, dy, alpha=alpha, transA=1 if tb else 0, transB=1, out=g.GI(0))
    if g.needs(1):  # dB = op(A)^T dY, transposed when transB
        if not tb:
            g.op("Gemm", a, dy, alpha=alpha, transA=0 if ta else 1, out=g.GI(1))
        else:
            g.op("Gemm", dy, a, alpha=alpha, transA=1, transB=1 if ta else 0, out=g.GI(1))
    if g.needs(2):
        beta = float(g.attr("beta"))
        t = dy if beta == 1.0 else g.op("Mul", dy, g.scalar(beta, g.O(0)))
        unbroadcast(g, t, g.I(2), out=g.GI(2))


def _swap_last(g: Grad, x: str, rank: int) -> str:
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    return g.op("Transpose", x, perm=perm)


@vjp("MatMul")
def matmul(g: Grad) -> None:
    a, b, dy = g.I(0), g.I(1), g.GO(0)
    ra, rb = g.rank(a), g.rank(b)
    if ra < 2 or rb < 2:
        raise BlackboxCamError(
            f"MatMul node '{g.node.name}' multiplies a 1-D tensor; only ranks >= 2 are supported")
    ydims = g.dims(g.O(0))
    batch = None if ydims is None else tuple(ydims[:-2])
    if g.needs(0):  # dA = dY B^T: batch dims of Y, matrix dims of A
        da = g.op("MatMul", dy, _swap_last(g, b, rb))
        dims = None if batch is None else batch + tuple(g.dims(a)[-2:])
        unbroadcast(g, da, a, out=g.GI(0), grad_dims=dims)
    if g.needs(1):  # dB = A^T dY
        db = g.op("MatMul", _swap_last(g, a, ra), dy)
        dims = None if batch is None else batch + tuple(g.dims(b)[-2:])
        unbroadcast(g, db, b, out=g.GI(1), grad_dims=dims)


@vjp("Einsum")
def einsum(g: Grad) -> None:
    """Y = einsum(equation, A, B), two operands: each operand's gradient is an einsum of the
    output's gradient and the other operand, ``dA = einsum("y,b->a", dY, B)``. That holds when
    every index of A appears in Y or B (an index summed in A alone would need a broadcast) and no
    term repeats an index (a diagonal) or uses an ellipsis; other equations are refused."""
    eq = str(g.attr("equation")).replace(" ", "")
    if "->" not in eq or "..." in eq or len(g.node.input) != 2:
        raise BlackboxCamError(f"Einsum node '{g.node.name}' ({eq!r}): only two operands with an explicit "
                               "output and no ellipsis are supported")
    ins, out = eq.split("->")
    terms = ins.split(",")
    if any(len(set(t)) != len(t) for t in terms + [out]):
        raise BlackboxCamError(f"Einsum node '{g.node.name}' ({eq!r}): a repeated index (a diagonal) is not supported")
    for k in (0, 1):
        mine, other = terms[k], terms[1 - k]
        if not g.needs(k):
            continue
        if set(mine) - set(out) - set(other):
            raise BlackboxCamError(f"Einsum node '{g.node.name}' ({eq!r}): an index summed in one operand alone "
                                   "is not supported")
        g.op("Einsum", g.GO(0), g.I(1 - k), equation=f"{out},{other}->{mine}", out=g.GI(k))
