"""Task losses, checked against hand values and independent numpy code."""

from __future__ import annotations

import math

import kornia
import numpy as np
import pytest
import torch
from torch.testing import assert_close

from mtlbench.losses import (
    BalancedBCE,
    L1DepthLoss,
    SegCrossEntropy,
    StructuredDepthLoss,
    balanced_bce,
    l1_depth,
    structured_depth,
)
from mtlbench.tasks import DatasetInfo

# ---------------------------------------------------------------------------------------------
# independent numpy references
# ---------------------------------------------------------------------------------------------


def sobel_np(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised 3×3 Sobel (kernel / 8) of one H×W plane, replicate padding, correlation.

    gx[i, j] = (a[i-1, j+1] + 2 a[i, j+1] + a[i+1, j+1] - a[i-1, j-1] - 2 a[i, j-1] - a[i+1, j-1]) / 8
    gy[i, j] = (a[i+1, j-1] + 2 a[i+1, j] + a[i+1, j+1] - a[i-1, j-1] - 2 a[i-1, j] - a[i-1, j+1]) / 8
    """
    a = np.asarray(a, dtype=np.float64)
    h, w = a.shape
    p = np.pad(a, 1, mode="edge")

    def at(di: int, dj: int) -> np.ndarray:
        return p[1 + di:1 + di + h, 1 + dj:1 + dj + w]

    gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1) - at(-1, -1) - 2 * at(0, -1) - at(1, -1)) / 8.0
    gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1) - at(-1, -1) - 2 * at(-1, 0) - at(-1, 1)) / 8.0
    return gx, gy


def erode_np(mask: np.ndarray) -> np.ndarray:
    """True where every in-image pixel of the 3×3 neighbourhood is True.

    With replicate padding the Sobel kernel only ever reads in-image pixels, so out-of-image
    neighbours are treated as valid (replicate-padding the mask gives exactly this)."""
    h, w = mask.shape
    p = np.pad(mask.astype(bool), 1, mode="edge")
    out = np.ones((h, w), dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            out &= p[1 + di:1 + di + h, 1 + dj:1 + dj + w]
    return out


def gradient_term_np(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> float:
    """mean over eroded mask and both axes of |Sobel(pred - target)|, for one H×W image."""
    gx, gy = sobel_np(pred - target)
    e = erode_np(valid)
    return float((np.abs(gx)[e].sum() + np.abs(gy)[e].sum()) / (2 * e.sum()))


def edge_aware_term_np(pred: np.ndarray, image: np.ndarray, valid: np.ndarray) -> float:
    """mean over eroded mask and both axes of |∇D|·exp(−mean_c |∇I_c|), one H×W image, C×H×W."""
    dx, dy = sobel_np(pred)
    ix = np.mean([np.abs(sobel_np(c)[0]) for c in image], axis=0)
    iy = np.mean([np.abs(sobel_np(c)[1]) for c in image], axis=0)
    e = erode_np(valid)
    tx = np.abs(dx) * np.exp(-ix)
    ty = np.abs(dy) * np.exp(-iy)
    return float((tx[e].sum() + ty[e].sum()) / (2 * e.sum()))


def _five_by_five(seed: int = 0):
    """A 1×1×5×5 depth case with two invalid pixels: (0,0) depth 0 and (3,4) depth > max_depth."""
    rng = np.random.default_rng(seed)
    max_depth = 10.0
    depth = rng.uniform(0.5, 9.5, size=(5, 5))
    depth[0, 0] = 0.0  # invalid: no measurement
    depth[3, 4] = 14.0  # invalid: beyond max_depth
    pred = rng.uniform(0.0, 1.0, size=(5, 5))
    image = rng.uniform(0.0, 1.0, size=(3, 5, 5))
    valid = (depth > 0) & (depth <= max_depth)
    return max_depth, depth, pred, image, valid


def _batch(depth: np.ndarray, image: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    b = {"depth": torch.tensor(depth, dtype=torch.float32)[None, None]}
    if image is not None:
        b["image"] = torch.tensor(image, dtype=torch.float32)[None]
    return b


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float32)[None, None]


# ---------------------------------------------------------------------------------------------
# assumptions about kornia, checked rather than trusted
# ---------------------------------------------------------------------------------------------


def test_kornia_sobel_is_normalised_replicate_padded_sobel():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 6, 7, generator=gen)
    got = kornia.filters.spatial_gradient(x, mode="sobel")  # B×C×2×H×W, [x, y]
    assert got.shape == (2, 3, 2, 6, 7)
    for b in range(2):
        for c in range(3):
            gx, gy = sobel_np(x[b, c].numpy())
            assert_close(got[b, c, 0].double(), torch.from_numpy(gx), rtol=1e-5, atol=1e-6)
            assert_close(got[b, c, 1].double(), torch.from_numpy(gy), rtol=1e-5, atol=1e-6)


def test_numpy_erosion_of_the_five_by_five_mask_by_hand():
    # invalid (0,0) removes rows 0-1 × cols 0-1 (4 px); invalid (3,4) removes rows 2-4 × cols 3-4
    # (6 px); 25 - 10 = 15 pixels remain.
    *_, valid = _five_by_five()
    e = erode_np(valid)
    expected = np.ones((5, 5), dtype=bool)
    expected[0:2, 0:2] = False
    expected[2:5, 3:5] = False
    np.testing.assert_array_equal(e, expected)
    assert e.sum() == 15


# ---------------------------------------------------------------------------------------------
# StructuredDepthLoss
# ---------------------------------------------------------------------------------------------

# 3×3 case, max_depth = 10. Depth in metres, 0 = invalid, 12 > max_depth = invalid, 10 is valid.
DEPTH_3x3 = np.array([[2.0, 0.0, 5.0],
                      [12.0, 10.0, 4.0],
                      [1.0, 8.0, 3.0]])
# normalised target:  [[0.2, 0.0, 0.5], [1.2, 1.0, 0.4], [0.1, 0.8, 0.3]]
PRED_3x3 = np.array([[0.3, 0.9, 0.5],
                     [0.0, 0.8, 0.4],
                     [0.4, 0.8, 0.1]])
# |pred - target| on the 7 valid pixels: 0.1, 0, 0.2, 0, 0.3, 0, 0.2 → sum 0.8
L1_3x3 = 0.8 / 7  # (including the invalid pixels would give (0.8 + 0.9 + 1.2) / 9)


def test_structured_l1_term_alone_hand_value_excludes_invalid():
    loss = StructuredDepthLoss(max_depth=10.0, alpha=1.0, beta=0.0, gamma=0.0)
    out = loss(_t(PRED_3x3), _batch(DEPTH_3x3))
    assert out.ndim == 0
    assert out.item() == pytest.approx(L1_3x3, rel=1e-6)


def test_structured_l1_term_is_scaled_by_alpha_and_by_max_depth():
    # alpha = 2: twice the L1 term
    out = StructuredDepthLoss(10.0, alpha=2.0, beta=0.0, gamma=0.0)(_t(PRED_3x3), _batch(DEPTH_3x3))
    assert out.item() == pytest.approx(2 * L1_3x3, rel=1e-6)
    # max_depth = 20 with the same depths in metres doubled: same normalised targets and same
    # validity (0 invalid, 24 > 20 invalid), so the same value
    out = StructuredDepthLoss(20.0, beta=0.0, gamma=0.0)(_t(PRED_3x3), _batch(2 * DEPTH_3x3))
    assert out.item() == pytest.approx(L1_3x3, rel=1e-6)


def test_l1_depth_loss_hand_value_and_equals_structured_without_gradient_terms():
    l1 = L1DepthLoss(max_depth=10.0)
    assert l1(_t(PRED_3x3), _batch(DEPTH_3x3)).item() == pytest.approx(L1_3x3, rel=1e-6)
    l1_registered = l1_depth(DatasetInfo(max_depth=10.0))
    assert l1_registered(_t(PRED_3x3), _batch(DEPTH_3x3)).item() == pytest.approx(L1_3x3, rel=1e-6)

    max_depth, depth, pred, image, _ = _five_by_five(seed=3)
    structured = StructuredDepthLoss(max_depth, alpha=1.0, beta=0.0, gamma=0.0)
    batch = _batch(depth, image)
    assert_close(l1(_t(pred), batch), structured(_t(pred), batch))
    # and both differ from the full structured loss on this input (the extra terms are non-zero)
    full = StructuredDepthLoss(max_depth)(_t(pred), batch)
    assert abs(full.item() - l1(_t(pred), batch).item()) > 1e-3


def test_gradient_term_linear_ramp_hand_value():
    # pred - target = 0.1·j along the width, all 25 pixels valid (depth 5 m, target 0.5).
    # Normalised Sobel of a ramp of slope s: interior columns (1+2+1)·2s/8 = s = 0.1,
    # border columns with replicate padding (1+2+1)·s/8 = 0.05; gy = 0 everywhere.
    # Sum |gx| = 5 rows × (3·0.1 + 2·0.05) = 2.0; mean over 25 pixels × 2 axes = 0.04.
    depth = np.full((5, 5), 5.0)
    pred = 0.5 + 0.1 * np.arange(5.0)[None, :].repeat(5, axis=0)
    loss = StructuredDepthLoss(10.0, alpha=0.0, beta=1.0, gamma=0.0)
    assert loss(_t(pred), _batch(depth)).item() == pytest.approx(0.04, rel=1e-5)


def test_gradient_term_matches_numpy_on_eroded_mask():
    max_depth, depth, pred, image, valid = _five_by_five()
    expected = gradient_term_np(pred, depth / max_depth, valid)
    loss = StructuredDepthLoss(max_depth, alpha=0.0, beta=1.0, gamma=0.0)
    got = loss(_t(pred), _batch(depth, image))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # the same without erosion would be a different number (guards against a vacuous check)
    gx, gy = sobel_np(pred - depth / max_depth)
    uneroded = (np.abs(gx)[valid].sum() + np.abs(gy)[valid].sum()) / (2 * valid.sum())
    assert abs(uneroded - expected) > 1e-4


def test_edge_aware_term_matches_numpy_on_eroded_mask():
    max_depth, depth, pred, image, valid = _five_by_five(seed=1)
    expected = edge_aware_term_np(pred, image, valid)
    loss = StructuredDepthLoss(max_depth, alpha=0.0, beta=0.0, gamma=1.0)
    got = loss(_t(pred), _batch(depth, image))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_edge_aware_term_flat_image_is_mean_depth_gradient():
    # A constant image has zero gradient, exp(0) = 1: the term is mean |∇D| over the mask.
    # Ramp 0.1·j as above, all valid: 2.0 / 50 = 0.04.
    depth = np.full((5, 5), 5.0)
    pred = 0.1 * np.arange(5.0)[None, :].repeat(5, axis=0)
    image = np.full((3, 5, 5), 0.7)
    loss = StructuredDepthLoss(10.0, alpha=0.0, beta=0.0, gamma=1.0)
    assert loss(_t(pred), _batch(depth, image)).item() == pytest.approx(0.04, rel=1e-5)


def test_structured_loss_is_weighted_sum_of_the_three_terms():
    max_depth, depth, pred, image, valid = _five_by_five(seed=2)
    target = depth / max_depth
    l1 = np.abs(pred - target)[valid].mean()
    grad = gradient_term_np(pred, target, valid)
    edge = edge_aware_term_np(pred, image, valid)
    alpha, beta, gamma = 1.0, 0.5, 0.1
    expected = alpha * l1 + beta * grad + gamma * edge
    got = structured_depth(DatasetInfo(max_depth=max_depth), alpha, beta, gamma)(_t(pred), _batch(depth, image))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # defaults are alpha=1, beta=1, gamma=0.1
    got = StructuredDepthLoss(max_depth)(_t(pred), _batch(depth, image))
    assert got.item() == pytest.approx(l1 + grad + 0.1 * edge, rel=1e-5)


def test_structured_loss_ignores_and_sends_no_gradient_to_invalid_pixels():
    max_depth, depth, pred, image, valid = _five_by_five(seed=4)
    loss = StructuredDepthLoss(max_depth, alpha=1.0, beta=1.0, gamma=0.1)
    p = _t(pred).requires_grad_(True)
    out = loss(p, _batch(depth, image))
    out.backward()
    invalid = torch.from_numpy(~valid)
    # the two invalid pixels are outside every eroded neighbourhood and outside the L1 mask
    assert torch.all(p.grad[0, 0][invalid] == 0)
    assert p.grad[0, 0][~invalid].abs().sum() > 0
    # changing the prediction and image at invalid pixels changes nothing
    pred2, image2 = pred.copy(), image.copy()
    pred2[~valid] = 50.0
    image2[:, ~valid] = -3.0
    out2 = loss(_t(pred2), _batch(depth, image2))
    assert out2.item() == pytest.approx(out.item(), rel=1e-6)


def test_structured_loss_no_valid_pixel_gives_zero_and_finite_gradient():
    # every pixel invalid: depth 0 or beyond max_depth
    depth = torch.tensor([[0.0, 12.0, 0.0], [0.0, 0.0, 11.0], [0.0, 0.0, 0.0]])
    batch = {"depth": depth.expand(2, 1, 3, 3).clone(), "image": torch.rand(2, 3, 3, 3)}
    pred = torch.rand(2, 1, 3, 3, requires_grad=True)
    out = StructuredDepthLoss(10.0, alpha=1.0, beta=1.0, gamma=0.1)(pred, batch)
    assert out.item() == 0.0
    assert not torch.isnan(out)
    out.backward()
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all()
    assert torch.all(pred.grad == 0)


# ---------------------------------------------------------------------------------------------
# SegCrossEntropy
# ---------------------------------------------------------------------------------------------


def test_seg_cross_entropy_hand_value_ignores_255():
    # 2 classes, 3 pixels (1×2×1×3 logits):
    #   pixel 0: logits [0, 0],       label 0 → p = 1/2 → CE = ln 2
    #   pixel 1: logits [0, ln 3],    label 1 → p = 3/4 → CE = ln(4/3)
    #   pixel 2: logits [10, -10],    label 255 → ignored (would be ~20 if counted as class 1)
    # mean over the 2 labelled pixels: (ln 2 + ln 4/3) / 2 = ln(8/3) / 2
    logits = torch.tensor([[[[0.0, 0.0, 10.0]], [[0.0, math.log(3.0), -10.0]]]])
    seg = torch.tensor([[[0, 1, 255]]])
    out = SegCrossEntropy()(logits, {"seg": seg})
    assert out.item() == pytest.approx(math.log(8.0 / 3.0) / 2, rel=1e-6)


def test_seg_cross_entropy_all_ignored_is_zero_not_nan():
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)
    seg = torch.full((2, 2, 2), 255)
    out = SegCrossEntropy()(logits, {"seg": seg})
    assert out.item() == 0.0
    out.backward()
    assert torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------------------------------------
# BalancedBCE
# ---------------------------------------------------------------------------------------------


def test_balanced_bce_hand_value():
    # 3 pixels, pos_weight 0.95:
    #   logit 0,    edge 1: BCE = -ln σ(0) = ln 2,         weight 0.95
    #   logit ln 3, edge 0: BCE = -ln(1 - 3/4) = ln 4,     weight 0.05
    #   logit 0,    edge 0: BCE = ln 2,                    weight 0.05
    # mean over all 3 pixels: (0.95 ln2 + 0.05·2 ln2 + 0.05 ln2) / 3 = 1.1 ln 2 / 3
    logits = torch.tensor([[[[0.0, math.log(3.0), 0.0]]]])
    edge = torch.tensor([[[[1.0, 0.0, 0.0]]]])
    expected = 1.1 * math.log(2.0) / 3
    assert BalancedBCE(0.95)(logits, {"edge": edge}).item() == pytest.approx(expected, rel=1e-6)
    assert balanced_bce(DatasetInfo(), 0.95)(logits, {"edge": edge}).item() == pytest.approx(expected, rel=1e-6)
    # pos_weight 0.5 weights every pixel 1/2: (ln2 + ln4 + ln2) / 3 / 2 = 4 ln 2 / 6
    assert BalancedBCE(0.5)(logits, {"edge": edge}).item() == pytest.approx(4 * math.log(2.0) / 6, rel=1e-6)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_balanced_bce_rejects_pos_weight_outside_open_unit_interval(bad):
    with pytest.raises(ValueError, match="pos_weight"):
        BalancedBCE(bad)
    with pytest.raises(ValueError, match="pos_weight"):
        balanced_bce(DatasetInfo(), bad)
