"""Arithmetic with broadcasting: Add, Sub, Mul, Div, Pow, Sum, Max, Min, Where, Neg, Abs, Sqrt,
Reciprocal, Exp, Log."""
from __future__ import annotations

from blackbox_cam.gradients.rules._context import Grad
from blackbox_cam.gradients.rules._helpers import unbroadcast
from blackbox_cam.gradients.rules._registry import vjp


@vjp("Add")
@vjp("Sum")
def add(g: Grad) -> None:
    for i in range(len(g.node.input)):
        if g.needs(i):
            unbroadcast(g, g.GO(0), g.I(i), out=g.GI(i))


@vjp("Sub")
def sub(g: Grad) -> None:
    if g.needs(0):
        unbroadcast(g, g.GO(0), g.I(0), out=g.GI(0))
    if g.needs(1):
        unbroadcast(g, g.op("Neg", g.GO(0)), g.I(1), out=g.GI(1))


@vjp("Mul")
def mul(g: Grad) -> None:
    for i, other in ((0, 1), (1, 0)):
        if g.needs(i):
            unbroadcast(g, g.op("Mul", g.GO(0), g.I(other)), g.I(i), out=g.GI(i))


@vjp("Div")
def div(g: Grad) -> None:
    if g.needs(0):
        unbroadcast(g, g.op("Div", g.GO(0), g.I(1)), g.I(0), out=g.GI(0))
    if g.needs(1):  # d(a/b)/db = -y/b
        t = g.op("Neg", g.op("Div", g.op("Mul", g.GO(0), g.O(0)), g.I(1)))
        unbroadcast(g, t, g.I(1), out=g.GI(1))


@vjp("Pow")
def pow_(g: Grad) -> None:
    a, b = g.I(0), g.I(1)
    if g.needs(0):  # b * a^(b-1)
        b_cast = b if g.dtype(b) == g.dtype(a) else g.op("Cast", b, to=g.dtype(a))
        p = g.op("Pow", a, g.op("Sub", b_cast, g.scalar(1.0, a)))
        unbroadcast(g, g.op("Mul", g.GO(0), g.op("Mul", b_cast, p)), a, out=g.GI(0))
    if g.needs(1):  # y * log(a)
        t = g.op("Mul", g.GO(0), g.op("Mul", g.O(0), g.op("Log", a)))
        unbroadcast(g, t, b, out=g.GI(1))


@vjp("Neg")
def neg(g: Grad) -> None:
    g.op("Neg", g.GO(0), out=g.GI(0))


@vjp("Sqrt")
def sqrt(g: Grad) -> None:
    g.op("Div", g.GO(0), g.op("Mul", g.O(0), g.scalar(2.0, g.O(0))), out=g.GI(0))


@vjp("Reciprocal")
def reciprocal(g: Grad) -> None:
    g.op("Neg", g.op("Mul", g.GO(0), g.op("Mul", g.O(0), g.O(0))), out=g.GI(0))


@vjp("Exp")
def exp(g: Grad) -> None:
    g.op("Mul", g.GO(0), g.O(0), out=g.GI(0))


@vjp("Log")
def log(g: Grad) -> None:
    g.op("Div", g.GO(0), g.I(0), out=g.GI(0))


@vjp("Max")
@vjp("Min")
def max_min(g: Grad) -> None:
    """The gradient goes to the input(s) equal to the result (every tied input gets it)."""
    zero = g.scalar(0.0, g.O(0))
    for i in range(len(g.node.input)):
        if g.needs(i):
            t = g.op("Where", g.op("Equal", g.I(i), g.O(0)), g.GO(0), zero)
            unbroadcast(g, t, g.I(i), out=g.GI(i))


@vjp("Where")
def where(g: Grad) -> None:
    zero = g.scalar(0.0, g.O(0))
    if g.needs(1):
        unbroadcast(g, g.op("Where", g.I(0), g.GO(0), zero), g.I(1), out=g.GI(1))
    if g.needs(2):
        unbroadcast(g, g.op("Where", g.I(0), zero, g.GO(0)), g.I(2), out=g.GI(2))


@vjp("Abs")
def abs_(g: Grad) -> None:
    g.op("Mul", g.GO(0), g.op("Sign", g.I(0)), out=g.GI(0))
