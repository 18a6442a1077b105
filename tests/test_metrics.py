"""Metrics on tiny cases whose values can be worked out by hand."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from blackbox_cam.metrics import (auc, blur, box_mask, deletion, energy_in_region, gkern, impute_linear,
                                  insertion, pointing_game, road, spearman, topk_iou)

H = W = 8
REGION = (slice(2, 6), slice(2, 6))             # 4x4 block: 16 pixels, two deletion steps of 8


def region_mean_model(h: int = H, w: int = W, region=REGION) -> bytes:
    """ONNX model with output ``[m, 1 - m]`` where m is the mean of the input over ``region`` (all channels)."""
    weight = np.zeros((1, 1, h, w), np.float32)
    weight[0, 0][region] = 1.0
    weight /= 3 * weight.sum()
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["xw"]),
        helper.make_node("ReduceSum", ["xw", "axes"], ["m"], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
        helper.make_node("Sub", ["unit", "m1"], ["rest"]),
        helper.make_node("Concat", ["m1", "rest"], ["p"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "region_mean",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, h, w])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
         numpy_helper.from_array(np.array([1], np.int64), "one"), numpy_helper.from_array(np.ones((1, 1), np.float32), "unit")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8                       # readable by older onnxruntime builds
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def prob_fn():
    sess = ort.InferenceSession(region_mean_model(), providers=["CPUExecutionProvider"])
    return lambda batch: sess.run(None, {"x": batch.astype(np.float32)})[0]


def perfect_map() -> np.ndarray:
    s = np.zeros((H, W))
    s[REGION] = 1.0 + np.arange(16).reshape(4, 4) / 100      # region first, in a fixed order
    return s


ONES = np.ones((3, H, W), np.float32)


# -- deletion / insertion ---------------------------------------------------------------------
def test_auc_is_trapezoid_normalised_by_intervals():
    assert auc(np.array([1.0, 0.5, 0.0])) == pytest.approx(0.5)
    assert auc(np.array([1.0, 1.0])) == pytest.approx(1.0)


def test_deletion_perfect_map_hand_value(prob_fn):
    # step = W = 8 pixels: 9 points; region gone after two steps -> [1, .5, 0, 0, ...]
    c = deletion(prob_fn, ONES, perfect_map(), 0)
    np.testing.assert_allclose(c.scores, [1, .5, 0, 0, 0, 0, 0, 0, 0], atol=1e-6)
    assert c.auc == pytest.approx(1.0 / 8)
    assert c.queries == H + 1
    np.testing.assert_allclose(c.fractions, np.arange(9) / 8)


def test_deletion_reversed_map_is_worst(prob_fn):
    # region deleted last: six steps at 1, then .5, then 0 -> (7.5 - .5) / 8
    c = deletion(prob_fn, ONES, -perfect_map(), 0)
    np.testing.assert_allclose(c.scores, [1, 1, 1, 1, 1, 1, 1, .5, 0], atol=1e-6)
    assert c.auc == pytest.approx(7.0 / 8)
    rng = np.random.default_rng(0)
    for _ in range(5):
        r = deletion(prob_fn, ONES, rng.random((H, W)), 0).auc
        assert 1.0 / 8 - 1e-9 <= r <= 7.0 / 8 + 1e-9


def test_insertion_perfect_map_matches_direct_computation(prob_fn):
    b = blur(ONES)
    order = np.argsort(-perfect_map().ravel(), kind="stable")
    expected = []
    for i in range(H + 1):
        img = b.reshape(3, -1).copy()
        img[:, order[: i * W]] = 1.0
        expected.append(img.reshape(3, H, W)[0][REGION].mean())
    c = insertion(prob_fn, ONES, perfect_map(), 0)
    np.testing.assert_allclose(c.scores, expected, atol=1e-6)
    assert c.scores[2] == pytest.approx(1.0)
    rev = insertion(prob_fn, ONES, -perfect_map(), 0)
    assert c.auc > rev.auc
    rng = np.random.default_rng(1)
    for _ in range(5):
        assert rev.auc - 1e-9 <= insertion(prob_fn, ONES, rng.random((H, W)), 0).auc <= c.auc + 1e-9


def test_blur_is_rise_gkern_with_zero_padding():
    k = gkern(11, 5)
    assert k.shape == (11, 11) and k.sum() == pytest.approx(1.0)
    ones = np.ones((3, 32, 32), np.float32)
    b = blur(ones)
    assert b[:, 16, 16] == pytest.approx(1.0, abs=1e-6)          # kernel fully inside the image
    assert b[0, 0, 0] == pytest.approx(k[5:, 5:].sum(), abs=1e-6)  # a quarter of the kernel sees zeros


def test_blur_equals_rise_conv2d_with_padding_5():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((3, 20, 30)).astype(np.float32)
    kern = np.zeros((3, 3, 11, 11), np.float32)
    for c in range(3):
        kern[c, c] = gkern(11, 5)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x)[None], torch.from_numpy(kern), padding=5)[0].numpy()
    np.testing.assert_allclose(blur(x), ref, atol=1e-5)


def test_constant_map_scores_as_random_order_without_warnings(prob_fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = deletion(prob_fn, ONES, np.zeros((H, W)), 0, seed=3)
        i = insertion(prob_fn, ONES, np.full((H, W), 7.0), 0, seed=3)
        r = road(prob_fn, ONES, np.zeros((H, W)), 0)
        assert spearman(np.zeros((H, W)), perfect_map()) == 0.0
        assert pointing_game(np.zeros((H, W)), (0, 0, 4, 4)) is False
        assert energy_in_region(np.zeros((H, W)), (0, 0, 4, 4)) == pytest.approx(16 / 64)
    assert 1 / 8 < d.auc < 7 / 8 and np.isfinite(i.auc) and np.isfinite(r.combined)
    assert deletion(prob_fn, ONES, np.zeros((H, W)), 0, seed=3).auc == d.auc     # deterministic


def test_map_shape_must_match_image(prob_fn):
    with pytest.raises(ValueError, match="resize the map"):
        deletion(prob_fn, ONES, np.zeros((4, 4)), 0)


# -- ROAD ---------------------------------------------------------------------------------------
def test_road_imputation_reproduces_a_linear_ramp_inside_a_block():
    yy, xx = np.mgrid[0:20, 0:24].astype(np.float32)
    x = np.stack([0.5 * yy - 0.25 * xx + 1, 0.1 * xx, np.full_like(yy, -2.0)])
    removed = np.zeros((20, 24), bool)
    removed[6:14, 5:17] = True
    y = impute_linear(x, removed, noise=0.0)
    np.testing.assert_allclose(y, x, atol=1e-4)                  # a linear image is its own interpolant
    assert np.all(y[:, ~removed] == x[:, ~removed])              # kept pixels untouched


def test_road_imputation_fills_smoothly_between_border_values():
    x = np.zeros((1, 16, 16), np.float32)
    x[0, :, 8:] = 1.0                                            # left half 0, right half 1
    removed = np.zeros((16, 16), bool)
    removed[4:12, 4:12] = True
    y = impute_linear(x, removed, noise=0.0)[0]
    inner = y[4:12, 4:12]
    assert inner.min() >= -1e-6 and inner.max() <= 1 + 1e-6     # maximum principle
    assert np.all(np.diff(inner, axis=1) > 0)                    # increases from the 0 side to the 1 side
    noisy = impute_linear(x, removed, noise=0.01, rng=np.random.default_rng(0))[0]
    assert 0.005 < np.std(noisy[4:12, 4:12] - inner) < 0.02


def test_road_removes_exact_fractions_and_combines_like_pytorch_grad_cam():
    seen = []

    def fake(batch):
        seen.append(batch.copy())
        return np.tile([[0.25, 0.75]], (len(batch), 1))

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 10, 10)).astype(np.float32)
    r = road(fake, x, rng.random((10, 10)), 0, fractions=(0.2, 0.5))
    imgs = np.concatenate(seen)
    assert r.queries == len(imgs) == 5
    changed = [(np.abs(im - x).max(axis=0) > 0).sum() for im in imgs]
    assert changed == [0, 20, 50, 20, 50]
    assert r.morf == r.lerf == 0.0 and r.combined == 0.0


def test_road_prefers_the_map_that_points_at_the_evidence(prob_fn):
    x = np.zeros((3, H, W), np.float32)
    x[:, 2:6, 2:6] = 1.0
    good = road(prob_fn, x, perfect_map(), 0)
    bad = road(prob_fn, x, -perfect_map(), 0)
    assert good.morf < good.lerf and good.combined > 0
    assert bad.combined < 0 < good.combined
    assert good.combined == pytest.approx((good.lerf - good.morf) / 2)


# -- localisation ---------------------------------------------------------------------------------
def test_box_mask_is_half_open_with_euclidean_tolerance():
    m = box_mask((2, 1, 4, 3), (5, 6))
    assert m.sum() == 4 and m[1:3, 2:4].all()
    t = box_mask((2, 1, 4, 3), (5, 6), tolerance=1)
    assert t.sum() == 4 + 8        # one pixel on each side, no corners (distance sqrt 2 > 1)


def test_pointing_game_on_constructed_maps():
    s = np.zeros((40, 40))
    s[10, 30] = 1.0
    assert pointing_game(s, (25, 5, 35, 15), tolerance=0)
    assert not pointing_game(s, (0, 0, 10, 10), tolerance=0)
    assert pointing_game(s, (0, 0, 10, 10), tolerance=21.1)      # centre (30, 10) to nearest (9, 9): ~21.02
    assert not pointing_game(s, (0, 0, 10, 10), tolerance=20.9)
    plateau = np.zeros((40, 40))
    plateau[0:4, 0:4] = 1.0                                      # 16 maximal pixels, 12 inside
    plateau[0:4, 4] = 1.0
    assert pointing_game(plateau, (0, 0, 3, 4), tolerance=0)     # 12 of 20 maximal pixels inside
    assert not pointing_game(plateau, (0, 0, 1, 4), tolerance=0)


def test_energy_in_region_box_and_mask():
    s = np.zeros((4, 4))
    s[0, 0], s[3, 3] = 3.0, 1.0
    s[1, 1] = -5.0                                               # negative mass is clipped away
    assert energy_in_region(s, (0, 0, 2, 2)) == pytest.approx(0.75)
    mask = np.zeros((4, 4), bool)
    mask[3, 3] = True
    assert energy_in_region(s, mask) == pytest.approx(0.25)
    assert energy_in_region(np.ones((4, 4)), (0, 0, 2, 2)) == pytest.approx(0.25)


# -- agreement --------------------------------------------------------------------------------------
def test_spearman_on_monotone_and_reversed_maps():
    a = np.random.default_rng(0).random((6, 6))
    assert spearman(a, 2 * a ** 3 + 1) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    b = np.array([[1.0, 2.0], [3.0, 4.0]])
    c = np.array([[1.0, 3.0], [2.0, 4.0]])
    assert spearman(b, c) == pytest.approx(0.8)                 # 1 - 6 * 2 / (4 * 15)


def test_topk_iou_hand_values():
    a = np.arange(16, dtype=float).reshape(4, 4)                 # top 25 %: the last row
    assert topk_iou(a, a, 25) == 1.0
    assert topk_iou(a, -a, 25) == 0.0
    b = a.T.copy()                                               # top 25 %: the last column
    assert topk_iou(a, b, 25) == pytest.approx(1 / 7)            # one shared pixel, 7 in the union
    with pytest.raises(ValueError, match="percentage"):
        topk_iou(a, b, 0)
