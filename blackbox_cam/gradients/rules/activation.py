"""Pointwise activations: Relu, LeakyRelu, PRelu, Elu, Clip, Sigmoid, HardSigmoid, HardSwish,
Tanh, Softplus, Erf, Gelu, Softmax, LogSoftmax."""
from __future__ import annotations

import math

from blackbox_cam.gradients.rules._context import Grad
from blackbox_cam.gradients.rules._helpers import unbroadcast
from blackbox_cam.gradients.rules._registry import vjp


def _masked(g: Grad, mask: str, value: str, out: str) -> str:
    return g.op("Where", mask, value, g.scalar(0.0, g.O(0)), out=out)


@vjp("Relu")
def relu(g: Grad) -> None:
    _masked(g, g.op("Greater", g.O(0), g.scalar(0.0, g.O(0))), g.GO(0), g.GI(0))


@vjp("LeakyRelu")
def leaky_relu(g: Grad) -> None:
    x = g.I(0)
    scaled = g.op("Mul", g.GO(0), g.scalar(float(g.attr("alpha")), x))
    g.op("Where", g.op("Greater", x, g.scalar(0.0, x)), g.GO(0), scaled, out=g.GI(0))


@vjp("PRelu")
def prelu(g: Grad) -> None:
    x, slope = g.I(0), g.I(1)
    positive = g.op("Greater", x, g.scalar(0.0, x))
    if g.needs(0):
        g.op("Where", positive, g.GO(0), g.op("Mul", g.GO(0), slope), out=g.GI(0))
    if g.needs(1):
        t = g.op("Where", positive, g.scalar(0.0, x), g.op("Mul", g.GO(0), x))
        unbroadcast(g, t, slope, out=g.GI(1))


@vjp("Elu")
def elu(g: Grad) -> None:
    """dy/dx = 1 for x > 0, else y + alpha."""
    x, y = g.I(0), g.O(0)
    neg = g.op("Mul", g.GO(0), g.op("Add", y, g.scalar(float(g.attr("alpha")), y)))
    g.op("Where", g.op("Greater", x, g.scalar(0.0, x)), g.GO(0), neg, out=g.GI(0))


@vjp("Softplus")
def softplus(g: Grad) -> None:
    g.op("Mul", g.GO(0), g.op("Sigmoid", g.I(0)), out=g.GI(0))


@vjp("Clip")
def clip(g: Grad) -> None:
    """Gradient passes where min < x < max (min/max are inputs 1 and 2, opset >= 11)."""
    x = g.I(0)
    mask = None
    for i, cmp in ((1, "Greater"), (2, "Less")):
        if g.I(i):
            m = g.op(cmp, x, g.I(i))
            mask = m if mask is None else g.op("And", mask, m)
    if mask is None:
        g.op("Identity", g.GO(0), out=g.GI(0))
    else:
        _masked(g, mask, g.GO(0), g.GI(0))


@vjp("Sigmoid")
def sigmoid(g: Grad) -> None:
    y = g.O(0)
    g.op("Mul", g.GO(0), g.op("Mul", y, g.op("Sub", g.scalar(1.0, y), y)), out=g.GI(0))


@vjp("Tanh")
def tanh(g: Grad) -> None:
    y = g.O(0)
    g.op("Mul", g.GO(0), g.op("Sub", g.scalar(1.0, y), g.op("Mul", y, y)), out=g.GI(0))


@vjp("HardSigmoid")
def hard_sigmoid(g: Grad) -> None:
    y = g.O(0)
    inside = g.op("And", g.op("Greater", y, g.scalar(0.0, y)), g.op("Less", y, g.scalar(1.0, y)))
    _masked(g, inside, g.op("Mul", g.GO(0), g.scalar(float(g.attr("alpha")), y)), g.GI(0))


@vjp("HardSwish")
def hard_swish(g: Grad) -> None:
    """y = x * clip(x/6 + 1/2, 0, 1): dy/dx = 0 below -3, 1 above 3, x/3 + 1/2 between."""
    x = g.I(0)
    mid = g.op("Add", g.op("Div", x, g.scalar(3.0, x)), g.scalar(0.5, x))
    d = g.op("Where", g.op("Greater", x, g.scalar(3.0, x)), g.scalar(1.0, x), mid)
    d = g.op("Where", g.op("Less", x, g.scalar(-3.0, x)), g.scalar(0.0, x), d)
    g.op("Mul", g.GO(0), d, out=g.GI(0))


@vjp("Erf")
def erf(g: Grad) -> None:
    x = g.I(0)
    e = g.op("Exp", g.op("Neg", g.op("Mul", x, x)))
    g.op("Mul", g.GO(0), g.op("Mul", e, g.scalar(2.0 / math.sqrt(math.pi), x)), out=g.GI(0))


@vjp("Gelu")
def gelu(g: Grad) -> None:
    x = g.I(0)
    approx = g.attr("approximate")
    if approx == "tanh":  # 0.5 x (1 + tanh(u)), u = c (x + 0.044715 x^3)
        c = math.sqrt(2.0 / math.pi)
        x2 = g.op("Mul", x, x)
        u = g.op("Mul", g.op("Mul", x, g.op("Add", g.op("Mul", x2, g.scalar(0.044715, x)),
                                             g.scalar(1.0, x))), g.scalar(c, x))
        t = g.op("Tanh", u)
        du = g.op("Mul", g.op("Add", g.op("Mul", x2, g.scalar(3 * 0.044715, x)),
                              g.scalar(1.0, x)), g.scalar(c, x))
        sech2 = g.op("Sub", g.scalar(1.0, x), g.op("Mul", t, t))
        d = g.op("Add", g.op("Mul", g.op("Add", t, g.scalar(1.0, x)), g.scalar(0.5, x)),
                 g.op("Mul", g.op("Mul", g.op("Mul", x, sech2), du), g.scalar(0.5, x)))
    else:  # Phi(x) + x phi(x)
        cdf = g.op("Mul", g.op("Add", g.op("Erf", g.op("Mul", x, g.scalar(1 / math.sqrt(2), x))),
                                g.scalar(1.0, x)), g.scalar(0.5, x))
        pdf = g.op("Mul", g.op("Exp", g.op("Mul", g.op("Mul", x, x), g.scalar(-0.5, x))),
                   g.scalar(1 / math.sqrt(2 * math.pi), x))
        d = g.op("Add", cdf, g.op("Mul", x, pdf))
    g.op("Mul", g.GO(0), d, out=g.GI(0))


@vjp("Softmax")
def softmax(g: Grad) -> None:
    """dx = y * (dy - sum(dy * y, axis)) (opset >= 13 semantics: one axis)."""
    y = g.O(0)
    s = g.op("ReduceSum", g.op("Mul", g.GO(0), y), g.ints([g.attr("axis")]), keepdims=1)
    g.op("Mul", y, g.op("Sub", g.GO(0), s), out=g.GI(0))


@vjp("LogSoftmax")
def log_softmax(g: Grad) -> None:
    """dx = dy - exp(y) * sum(dy, axis)."""
    s = g.op("ReduceSum", g.GO(0), g.ints([g.attr("axis")]), keepdims=1)
    g.op("Sub", g.GO(0), g.op("Mul", g.op("Exp", g.O(0)), s), out=g.GI(0))
