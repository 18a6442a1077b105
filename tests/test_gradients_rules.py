"""Every VJP rule against central finite differences through ONNX Runtime.

Each case is one op in a tiny onnx.helper model. The gradient graph's output is compared with
central differences of score = sum(seed * y), in float64 where ORT has float64 kernels for the
op and its gradient, else float32. Input domains keep away from kinks (Relu at 0, Clip bounds,
HardSwish at +-3, MaxPool ties). Failures print the seed; rerun with BBCAM_GRAD_SEED=<seed>.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, NotImplemented

from blackbox_cam.gradients import build_gradient_model, supported_ops
from gradients_util import case_seed, fd_gradient, not_implemented, one_op_model, seed_note, session


@dataclass
class Case:
    op: str
    make: Callable  # (rng, dtype) -> list[(name, array, differentiable)]
    attrs: dict = field(default_factory=dict)
    n_outputs: int = 1
    target: int = 0
    opset: int = 17
    float64: bool = True  # try float64 first
    dynamic: bool = False  # symbolic input dims: rules must use run-time shapes


def away(rng, shape, lo, hi, kinks=(0.0,), gap=0.05):
    """Uniform values in [lo, hi] at least ``gap`` from every kink."""
    x = rng.uniform(lo, hi, size=shape)
    for _ in range(100):
        bad = np.zeros(x.shape, bool)
        for k in kinks:
            bad |= np.abs(x - k) < gap
        if not bad.any():
            return x
        x[bad] = rng.uniform(lo, hi, size=int(bad.sum()))
    raise AssertionError("could not draw values away from kinks")


def X(shape, lo=-2.0, hi=2.0, kinks=(), name="x"):
    return lambda rng, dt: [(name, away(rng, shape, lo, hi, kinks).astype(dt), True)]


def const(name, value, dtype=None):
    return (name, np.asarray(value, dtype=dtype), False)


def ints(name, value):
    return const(name, value, np.int64)


def distinct(rng, shape, dt):
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 0.1 - n * 0.05).astype(dt)


def with_(base, *extra):
    """Inputs of ``base`` followed by constants ``extra`` (given as (rng, dt) -> tuple or tuple)."""
    def make(rng, dt):
        out = base(rng, dt)
        for e in extra:
            out.append(e(rng, dt) if callable(e) else e)
        return out
    return make


def xs(*specs):
    """Several differentiable inputs: specs of (name, shape, lo, hi)."""
    def make(rng, dt):
        return [(n, rng.uniform(lo, hi, size=s).astype(dt), True) for n, s, lo, hi in specs]
    return make


W = lambda name, shape: (lambda rng, dt: (name, rng.normal(size=shape).astype(dt), False))  # noqa: E731

CASES: dict[str, Case] = {
    # activations
    "Relu": Case("Relu", X((2, 3, 4), kinks=(0.0,))),
    "LeakyRelu": Case("LeakyRelu", X((2, 3, 4), kinks=(0.0,)), {"alpha": 0.1}),
    "PRelu": Case("PRelu", with_(X((2, 3, 2, 2), kinks=(0.0,)), W("slope", (3, 1, 1)))),
    "PRelu-slope": Case("PRelu", xs(("x", (2, 3, 2, 2), 0.1, 1.0), ("slope", (3, 1, 1), 0.1, 0.5))),
    "Clip": Case("Clip", with_(X((2, 3, 4), -2, 2, kinks=(-1.0, 1.0)), const("lo", -1.0),
                               const("hi", 1.0))),
    "Clip-max-only": Case("Clip", with_(X((3, 4), -8, 8, kinks=(6.0,)), ("", None, False),
                                        const("hi", 6.0))),
    "Elu": Case("Elu", X((2, 3, 4), kinks=(0.0,)), {"alpha": 0.7}),
    "Softplus": Case("Softplus", X((2, 5), -3, 3)),
    "Sigmoid": Case("Sigmoid", X((2, 3, 4), -4, 4)),
    "Tanh": Case("Tanh", X((2, 3, 4))),
    "HardSigmoid": Case("HardSigmoid", X((3, 5), -4, 4, kinks=(-2.5, 2.5)), {"alpha": 0.2}),
    "HardSwish": Case("HardSwish", X((3, 6), -5, 5, kinks=(-3.0, 3.0)), opset=17),
    "Erf": Case("Erf", X((2, 5))),
    "Gelu": Case("Gelu", X((2, 5), -3, 3), opset=20),
    "Gelu-tanh": Case("Gelu", X((2, 5), -3, 3), {"approximate": "tanh"}, opset=20),
    "Softmax": Case("Softmax", X((2, 3, 4)), {"axis": 1}),
    "Softmax-last": Case("Softmax", X((3, 5))),
    "LogSoftmax": Case("LogSoftmax", X((3, 5))),
    # elementwise
    "Add": Case("Add", xs(("a", (2, 3, 4), -1, 1), ("b", (3, 1), -1, 1))),
    "Add-dynamic-shapes": Case("Add", xs(("a", (2, 3, 4), -1, 1), ("b", (3, 1), -1, 1)),
                               dynamic=True),
    "Mul-dynamic-shapes": Case("Mul", xs(("a", (2, 1, 4), -1, 1), ("b", (3, 1), -1, 1)),
                               dynamic=True),
    "MatMul-dynamic-shapes": Case("MatMul", xs(("a", (2, 1, 3, 4), -1, 1), ("b", (3, 4, 5), -1, 1)),
                                  dynamic=True),
    "Conv-stride2-dynamic-dims": Case("Conv", with_(X((1, 3, 7, 6)), W("w", (4, 3, 3, 3))),
                                      {"pads": [0, 0, 1, 1], "strides": [2, 2]}, dynamic=True),
    "Conv-depthwise-dynamic-dims": Case("Conv", with_(X((2, 3, 5, 5)), W("w", (3, 1, 3, 3))),
                                        {"pads": [1, 1, 1, 1], "group": 3}, dynamic=True),
    "Conv-stride2-symmetric-pads": Case("Conv", with_(X((2, 3, 5, 5)), W("w", (4, 3, 3, 3))),
                                        {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    "Sub": Case("Sub", xs(("a", (3, 1), -1, 1), ("b", (2, 3, 4), -1, 1))),
    "Mul": Case("Mul", xs(("a", (2, 3, 4), -1, 1), ("b", (1, 4), -1, 1))),
    "Div": Case("Div", xs(("a", (2, 3, 4), -1, 1), ("b", (3, 4), 0.5, 2))),
    "Pow": Case("Pow", xs(("a", (2, 3), 0.5, 2), ("b", (3,), 0.5, 3))),
    "Pow-const-exponent": Case("Pow", with_(X((2, 3), 0.5, 2), lambda r, dt: const("e", 3.0, dt))),
    "Sum": Case("Sum", xs(("a", (2, 3, 4), -1, 1), ("b", (4,), -1, 1), ("c", (3, 1), -1, 1))),
    "Neg": Case("Neg", X((2, 3))),
    "Abs": Case("Abs", X((2, 3), kinks=(0.0,))),
    "Max": Case("Max", lambda r, dt: [(n, v, True) for n, v in zip(
        "abc", np.split(distinct(r, (3, 2, 4), dt), 3))]),
    "Min-broadcast": Case("Min", lambda r, dt: [
        ("a", distinct(r, (2, 4), dt), True),
        ("b", (distinct(r, (4,), dt) + 0.05).astype(dt), True)]),
    "Where": Case("Where", lambda r, dt: [
        ("c", r.uniform(size=(3, 4)) > 0.5, False),
        ("a", r.normal(size=(2, 3, 4)).astype(dt), True),
        ("b", r.normal(size=(4,)).astype(dt), True)]),
    "Sqrt": Case("Sqrt", X((2, 3), 0.5, 3)),
    "Reciprocal": Case("Reciprocal", X((2, 3), 0.5, 3)),
    "Exp": Case("Exp", X((2, 3))),
    "Log": Case("Log", X((2, 3), 0.5, 3)),
    # shape
    "Reshape": Case("Reshape", with_(X((2, 3, 4)), ints("s", [4, -1]))),
    "Flatten": Case("Flatten", X((2, 3, 2, 2)), {"axis": 2}),
    "Squeeze": Case("Squeeze", with_(X((2, 1, 3)), ints("axes", [1]))),
    "Unsqueeze": Case("Unsqueeze", with_(X((2, 3)), ints("axes", [0, 2]))),
    "Identity": Case("Identity", X((2, 3))),
    "Dropout": Case("Dropout", X((2, 3))),
    "Transpose": Case("Transpose", X((2, 3, 4)), {"perm": [2, 0, 1]}),
    "Transpose-default": Case("Transpose", X((2, 3, 4))),
    "Concat": Case("Concat", xs(("a", (2, 1, 3), -1, 1), ("b", (2, 2, 3), -1, 1),
                               ("c", (2, 3, 3), -1, 1)), {"axis": 1}),
    "Split": Case("Split", with_(X((2, 5, 2)), ints("split", [2, 3])), {"axis": 1},
                  n_outputs=2, target=1),
    "Slice": Case("Slice", with_(X((3, 5, 4)), ints("st", [1, 0]), ints("en", [5, -1]),
                                 ints("ax", [1, 2]))),
    "Slice-steps": Case("Slice", with_(X((3, 6, 4)), ints("st", [-1, 0]), ints("en", [-100, 4]),
                                       ints("ax", [1, 2]), ints("sp", [-2, 3]))),
    "Pad": Case("Pad", with_(X((2, 3, 3)), ints("p", [0, 1, 2, 1, 0, -1]))),
    "Pad-reflect": Case("Pad", with_(X((2, 3, 4)), ints("p", [0, 2, 1, 0, 1, 2])),
                        {"mode": "reflect"}),
    "Pad-edge": Case("Pad", with_(X((2, 3, 4)), ints("p", [0, 2, 1, 0, 1, 2])), {"mode": "edge"}),
    "Gather": Case("Gather", with_(X((2, 4, 3)), ints("i", [0, 2, 0, -1])), {"axis": 1}),
    "Gather-cls-token": Case("Gather", with_(X((2, 4, 3)), ints("i", 0)), {"axis": 1}),
    "Expand": Case("Expand", with_(X((3, 1)), ints("s", [2, 3, 4]))),
    "Cast": Case("Cast", X((2, 3)), {"to": 1}),
    # matmul
    "Gemm": Case("Gemm", xs(("a", (3, 4), -1, 1), ("b", (4, 5), -1, 1), ("c", (1, 5), -1, 1)),
                 {"alpha": 0.7, "beta": 1.3}),
    "Gemm-transA": Case("Gemm", xs(("a", (4, 3), -1, 1), ("b", (4, 5), -1, 1)), {"transA": 1}),
    "Gemm-transB": Case("Gemm", xs(("a", (3, 4), -1, 1), ("b", (5, 4), -1, 1), ("c", (5,), -1, 1)),
                        {"transB": 1, "alpha": 1.5}),
    "Gemm-transAB": Case("Gemm", xs(("a", (4, 3), -1, 1), ("b", (5, 4), -1, 1)),
                         {"transA": 1, "transB": 1}),
    "MatMul": Case("MatMul", xs(("a", (2, 1, 3, 4), -1, 1), ("b", (3, 4, 5), -1, 1))),
    "MatMul-2d": Case("MatMul", xs(("a", (3, 4), -1, 1), ("b", (4, 2), -1, 1))),
    # DETR-style query product (the detector zoo's DETR head): batch kept, one index contracted
    "Einsum": Case("Einsum", xs(("a", (2, 3, 4), -1, 1), ("b", (5, 4), -1, 1)), {"equation": "bcn,qn->bqc"}),
    "Einsum-batched-matmul": Case("Einsum", xs(("a", (2, 3, 4), -1, 1), ("b", (2, 4, 5), -1, 1)),
                                  {"equation": "bij,bjk->bik"}),
    # conv
    "Conv": Case("Conv", with_(X((1, 4, 5, 5)), W("w", (6, 4, 3, 3))), {"pads": [1, 1, 1, 1]}),
    "Conv-stride2-tf-same": Case("Conv", with_(X((1, 3, 6, 6)), W("w", (4, 3, 3, 3))),
                                 {"strides": [2, 2], "pads": [0, 0, 1, 1]}),
    "Conv-depthwise-stride2": Case("Conv", with_(X((2, 4, 7, 7)), W("w", (4, 1, 3, 3))),
                                   {"strides": [2, 2], "pads": [1, 1, 1, 1], "group": 4}),
    "Conv-dilated-group": Case("Conv", with_(X((1, 4, 6, 6)), W("w", (6, 2, 3, 3))),
                               {"dilations": [2, 2], "pads": [2, 1, 2, 2], "group": 2}),
    "Conv-auto-same-upper": Case("Conv", with_(X((1, 2, 7, 7)), W("w", (3, 2, 3, 3))),
                                 {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    "Conv-1x1-bias": Case("Conv", with_(X((2, 3, 2, 2)), W("w", (5, 3, 1, 1)), W("b", (5,)))),
    "Conv-stride3-remainder": Case("Conv", with_(X((1, 2, 8, 7)), W("w", (2, 2, 2, 3))),
                                   {"strides": [3, 2]}),
    # resize
    "Resize-nearest": Case("Resize", with_(X((1, 2, 3, 4)), ("", None, False),
                                           const("sc", [1, 1, 2, 1.5], np.float32))),
    "Resize-linear-half-pixel": Case("Resize", with_(X((1, 2, 3, 4)), ("", None, False),
                                                     ("", None, False), ints("sz", [1, 2, 5, 7])),
                                     {"mode": "linear"}),
    "Resize-cubic-align-corners": Case("Resize", with_(X((2, 1, 4, 3)), ("", None, False),
                                                       const("sc", [1, 1, 1.5, 2], np.float32)),
                                       {"mode": "cubic",
                                        "coordinate_transformation_mode": "align_corners"}),
    "Resize-linear-downscale-antialias": Case("Resize", with_(
        X((1, 2, 6, 8)), ("", None, False), const("sc", [1, 1, 0.5, 0.5], np.float32)),
        {"mode": "linear", "antialias": 1}, opset=18),
    # normalization
    "BatchNormalization": Case("BatchNormalization", with_(
        X((2, 3, 2, 2)), W("s", (3,)), W("b", (3,)), W("m", (3,)),
        lambda r, dt: ("v", r.uniform(0.5, 2, 3).astype(dt), False))),
    "LayerNormalization": Case("LayerNormalization", with_(X((2, 3, 5)), W("s", (5,)),
                                                           W("b", (5,)))),
    "LayerNormalization-axis1": Case("LayerNormalization", with_(X((2, 3, 4)), W("s", (3, 4))),
                                     {"axis": 1, "epsilon": 1e-3}),
    "LRN": Case("LRN", X((1, 5, 2, 3)), {"size": 3, "alpha": 0.1, "beta": 0.75, "bias": 1.5}),
    # reductions and pooling
    "GlobalAveragePool": Case("GlobalAveragePool", X((2, 3, 4, 5))),
    "GlobalMaxPool": Case("GlobalMaxPool", lambda r, dt: [("x", distinct(r, (2, 3, 2, 3), dt),
                                                           True)]),
    "ReduceMean": Case("ReduceMean", X((2, 3, 4, 5)), {"axes": [2, 3]}),
    "ReduceMean-nokeep": Case("ReduceMean", X((2, 3, 4)), {"axes": [1], "keepdims": 0}),
    "ReduceMean-opset18": Case("ReduceMean", with_(X((2, 3, 4, 5)), ints("ax", [-1, -2])),
                               {"keepdims": 0}, opset=18),
    "ReduceSum": Case("ReduceSum", with_(X((2, 3, 4)), ints("ax", [1])), {"keepdims": 0}),
    "ReduceSum-all": Case("ReduceSum", X((2, 3))),
    "AveragePool": Case("AveragePool", X((1, 2, 5, 5)),
                        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "AveragePool-include-pad": Case("AveragePool", X((1, 2, 4, 4)),
                                    {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                     "count_include_pad": 1}),
    "AveragePool-2x2": Case("AveragePool", X((2, 2, 4, 6)), {"kernel_shape": [2, 2],
                                                             "strides": [2, 2]}),
    "AveragePool-ceil": Case("AveragePool", X((1, 2, 6, 6)),
                             {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    "MaxPool": Case("MaxPool", lambda r, dt: [("x", distinct(r, (2, 2, 5, 5), dt), True)],
                    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "MaxPool-2x2": Case("MaxPool", lambda r, dt: [("x", distinct(r, (1, 3, 4, 4), dt), True)],
                        {"kernel_shape": [2, 2], "strides": [2, 2]}),
    "MaxPool-dilated-ceil": Case("MaxPool", lambda r, dt: [("x", distinct(r, (1, 1, 7, 7), dt),
                                                            True)],
                                 {"kernel_shape": [2, 2], "strides": [2, 2], "dilations": [2, 2],
                                  "ceil_mode": 1}),
}


def _run_case(case: Case, dt, seed: int):
    rng = np.random.default_rng(seed)
    inputs = case.make(rng, dt)
    model = one_op_model(case.op, inputs, case.attrs, case.n_outputs, case.opset, case.dynamic)
    diff = [(n, v) for n, v, d in inputs if d]
    target = f"y{case.target}"
    # a final Softmax is skipped by default (logits); here the Softmax is the op under test
    gm = build_gradient_model(model, [n for n, _ in diff], output=target,
                              use_probability=case.op == "Softmax")
    fwd = session(model)
    grad_sess = session(gm.model)
    y = fwd.run([target], {n: v for n, v in diff})[0]
    seed_arr = rng.normal(size=y.shape).astype(y.dtype)
    feeds = {n: v for n, v in diff}
    feeds[gm.seed_name] = seed_arr
    out = dict(zip([o.name for o in grad_sess.get_outputs()],
                   grad_sess.run(None, feeds)))
    results = []
    for name, value in diff:
        def score(v, name=name):
            f = dict((n, w) for n, w in diff)
            f[name] = v
            return float(np.sum(seed_arr.astype(np.float64)
                                * fwd.run([target], f)[0].astype(np.float64)))
        eps = 1e-6 if dt == np.float64 and y.dtype == np.float64 else 1e-2
        expected = fd_gradient(score, value.copy(), eps)
        results.append((name, out[gm.gradient_names[name]], expected, y.dtype))
    return results


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_rule_matches_finite_differences(case_id):
    case = CASES[case_id]
    seed = case_seed(case_id)
    dt = np.float64 if case.float64 else np.float32
    try:
        results = _run_case(case, dt, seed)
    except (Fail, NotImplemented) as exc:
        if dt != np.float64 or not not_implemented(exc):
            raise
        dt = np.float32
        results = _run_case(case, dt, seed)
    for name, got, expected, y_dtype in results:
        f64 = got.dtype == np.float64 and y_dtype == np.float64
        rtol, atol = (1e-6, 1e-7) if f64 else (3e-3, 5e-4)
        np.testing.assert_allclose(
            got, expected, rtol=rtol, atol=atol,
            err_msg=f"{case_id}: d score / d {name} in {np.dtype(dt).name}; {seed_note(seed)}")


def test_every_rule_has_a_finite_difference_case():
    covered = {c.op for c in CASES.values()}
    missing = sorted(set(supported_ops()) - covered)
    assert not missing, f"rules without a finite-difference case: {missing}"


def test_maxpool_gradient_of_a_float16_graph_runs_on_onnx_runtime():
    """Regression (issue 27): a float16 export's MaxPool (YOLOv8's SPPF) made a gradient graph
    ONNX Runtime refused ("MLFloat16 ... not supported with ScatterElements ... reduction 'add'");
    the scatter now accumulates in float32. Same routing as the float32 graph."""
    attrs = CASES["MaxPool"].attrs
    x = distinct(np.random.default_rng(case_seed("MaxPool-float16")), (2, 2, 5, 5), np.float32)
    seed = np.linspace(-1, 1, 2 * 2 * 3 * 3, dtype=np.float32).reshape(2, 2, 3, 3)
    got = {}
    for dt in (np.float32, np.float16):
        gm = build_gradient_model(one_op_model("MaxPool", [("x", x.astype(dt), True)], attrs), ["x"], output="y0")
        got[dt] = session(gm.model).run([gm.gradient_names["x"]], {"x": x.astype(dt), gm.seed_name: seed.astype(dt)})[0]
    assert got[np.float16].dtype == np.float16
    np.testing.assert_allclose(got[np.float16].astype(np.float32), got[np.float32], atol=1e-3)
