"""iBims-1 depth-boundary errors: the chamfer formulas against a direct numpy/scipy transcription,
hand cases on depth steps, and Canny against ``skimage.feature.canny``.

Hand cases put the GT depth step on one pixel column holding the mid value (left 0, column c
0.5, right 1 after normalisation): the smoothed gradient then peaks on column c alone, so Canny
gives a single straight line (a step between two columns gives two tied columns, both kept by
non-maximum suppression). A prediction with the same step k columns over gives a parallel line
of the same rows, so every predicted edge is k px from the GT line and every GT edge k px from
the predicted one: acc = comp = k.
"""

from __future__ import annotations

import math

import kornia
import numpy as np
import pytest
import torch
from scipy import ndimage

from mtlbench.metrics import boundary
from mtlbench.metrics.boundary import canny, chamfer_errors, depth_boundary_errors

LIMIT = 10.0
SIGMA = 2**0.5

CANNY_REFERENCE = "scikit-image (the test extra) is the independent Canny reference"



def _reference_chamfer(edges_pred: np.ndarray, edges_gt: np.ndarray, th: float = LIMIT) -> tuple[float, float]:
    """The iBims-1 formulas for one image, written out with scipy's exact distance transform."""
    if not edges_gt.any():
        return math.nan, math.nan
    d_gt = ndimage.distance_transform_edt(~edges_gt)
    d_est = ndimage.distance_transform_edt(~edges_pred) if edges_pred.any() else np.full(edges_gt.shape, np.inf)
    near = edges_pred & (d_gt < th)
    if not near.any():
        return th, th
    acc = d_gt[near].mean()
    comp = (np.minimum(d_gt[edges_pred], th).sum() + np.minimum(d_est[edges_gt], th).sum()) / (
        edges_pred.sum() + edges_gt.sum())
    return acc, comp


def _step(h: int, w: int, col: int, low: float = 2.0, high: float = 5.0) -> np.ndarray:
    """Depth with a vertical step at ``col`` (that column holds the mid value)."""
    x = np.full((h, w), low, dtype=np.float32)
    x[:, col + 1:] = high
    x[:, col] = (low + high) / 2
    return x


def _scenes(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Piecewise-planar depth maps: a tilted background and a few boxes in front."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w), dtype=np.float32)
    for i in range(n):
        d = 4 + 0.01 * rng.uniform(-1, 1) * xx + 0.01 * rng.uniform(-1, 1) * yy
        for _ in range(rng.integers(1, 4)):
            y0, x0 = rng.integers(0, h - 10), rng.integers(0, w - 10)
            y1, x1 = y0 + rng.integers(8, h // 2), x0 + rng.integers(8, w // 2)
            d[y0:y1, x0:x1] = rng.uniform(1, 3.5) + 0.005 * rng.uniform(-1, 1) * xx[y0:y1, x0:x1]
        out[i] = d
    return out


# --- chamfer formulas -------------------------------------------------------------------------

def test_chamfer_errors_equal_the_ibims_formulas() -> None:
    rng = np.random.default_rng(0)
    h, w = 48, 64
    gt = rng.random((8, h, w)) < 0.02
    pred = rng.random((8, h, w)) < 0.02
    gt[1] = False  # no GT edges: NaN
    pred[2] = False  # no predicted edges: θ
    pred[3] = False
    pred[3, 40:, 55:] = True  # predicted edges, all farther than θ from the GT: θ
    gt[3] = False
    gt[3, :5, :5] = True
    pred[4] = gt[4]  # perfect: 0
    gt[5] = False
    gt[5, 0, 0] = True  # a single GT pixel in the corner
    acc, comp = chamfer_errors(torch.from_numpy(pred), torch.from_numpy(gt))
    assert acc.dtype == comp.dtype == torch.float64 and acc.shape == (8,)
    ref = np.array([_reference_chamfer(p, g) for p, g in zip(pred, gt)])
    np.testing.assert_allclose(acc.numpy(), ref[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(comp.numpy(), ref[:, 1], rtol=0, atol=1e-12)
    assert math.isnan(acc[1]) and acc[2] == comp[2] == LIMIT and acc[3] == comp[3] == LIMIT
    assert acc[4] == comp[4] == 0


def test_chamfer_errors_other_limit() -> None:
    rng = np.random.default_rng(1)
    gt, pred = rng.random((4, 30, 30)) < 0.01, rng.random((4, 30, 30)) < 0.03
    acc, comp = chamfer_errors(torch.from_numpy(pred), torch.from_numpy(gt), limit=3.0)
    ref = np.array([_reference_chamfer(p, g, 3.0) for p, g in zip(pred, gt)])
    np.testing.assert_allclose(np.stack([acc.numpy(), comp.numpy()], 1), ref, rtol=0, atol=1e-12)


def test_chamfer_hand_case() -> None:
    gt = torch.zeros(1, 9, 9, dtype=torch.bool)
    pred = torch.zeros_like(gt)
    gt[0, 4, 2] = True
    pred[0, 4, 4] = pred[0, 1, 2] = True  # 2 and 3 px from the GT pixel
    acc, comp = chamfer_errors(pred, gt)
    assert acc.item() == pytest.approx(2.5)
    # GT pixel to nearest prediction: 2; sum 2 + 3 + 2 over 3 edge pixels
    assert comp.item() == pytest.approx(7 / 3)


# --- depth-boundary errors: hand cases --------------------------------------------------------

@pytest.mark.parametrize("k", [0, 1, 3, -2])
def test_shifted_step_gives_shift(k: int) -> None:
    h, w = 40, 64
    gt = torch.from_numpy(_step(h, w, 30))[None]
    pred = torch.from_numpy(_step(h, w, 30 + k, low=1.0, high=3.0))[None]  # other depths: normalised away
    acc, comp = depth_boundary_errors(pred, gt, torch.ones_like(gt, dtype=torch.bool))
    assert acc.item() == pytest.approx(abs(k), abs=1e-12)
    assert comp.item() == pytest.approx(abs(k), abs=1e-12)


def test_step_edges_are_one_straight_line() -> None:
    edges = canny(torch.from_numpy(_step(20, 30, 12))[None])[0]
    rows, cols = edges.nonzero(as_tuple=True)
    assert set(cols.tolist()) == {12}
    assert rows.tolist() == list(range(1, 19))  # all rows but the border ones


def test_prediction_without_edges_gets_limit() -> None:
    # the official script: no predicted edge within θ of the GT edges → acc = comp = θ
    h, w = 32, 48
    gt = torch.from_numpy(_step(h, w, 20))[None].repeat(3, 1, 1)
    flat = torch.full((h, w), 3.0)
    ramp = torch.linspace(2.0, 2.5, w).expand(h, w)  # gradient far below the thresholds
    far = torch.from_numpy(_step(h, w, 35))  # a step 15 px away
    pred = torch.stack([flat, ramp, far])
    acc, comp = depth_boundary_errors(pred, gt, torch.ones(3, h, w, dtype=torch.bool))
    assert acc.tolist() == [LIMIT] * 3 and comp.tolist() == [LIMIT] * 3


def test_gt_without_edges_is_nan() -> None:
    h, w = 32, 48
    gt = torch.stack([torch.full((h, w), 3.0), torch.linspace(2.0, 2.5, w).expand(h, w),
                      torch.from_numpy(_step(h, w, 20))])
    pred = torch.from_numpy(_step(h, w, 20))[None].repeat(3, 1, 1)
    valid = torch.ones(3, h, w, dtype=torch.bool)
    valid[2] = False  # no valid pixel at all
    acc, comp = depth_boundary_errors(pred, gt, valid)
    assert torch.isnan(acc).all() and torch.isnan(comp).all()
    tiny = torch.rand(2, 2, 2)
    assert torch.isnan(depth_boundary_errors(tiny, tiny, None)[0]).all()


def test_invariant_to_depth_scale_and_offset() -> None:
    rng = np.random.default_rng(3)
    gt = torch.from_numpy(_scenes(rng, 4, 48, 64))
    pred = torch.from_numpy(_scenes(rng, 4, 48, 64))
    valid = torch.ones_like(gt, dtype=torch.bool)
    a0, c0 = depth_boundary_errors(pred, gt, valid)
    a1, c1 = depth_boundary_errors(pred * 2.5 + 1.0, gt * 0.5 + 3.0, valid)
    assert not torch.isnan(a0).any()
    torch.testing.assert_close(a0, a1, rtol=0, atol=1e-9)
    torch.testing.assert_close(c0, c1, rtol=0, atol=1e-9)


def test_batch_split_into_chunks_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    gt = torch.from_numpy(_scenes(rng, 5, 40, 56))
    pred = torch.from_numpy(_scenes(rng, 5, 40, 56))
    valid = torch.from_numpy(rng.random((5, 40, 56)) > 0.002)
    gt[2] = 3.0  # a chunk without any candidate
    pred.requires_grad_(True)  # as straight from a model: no graph is built
    whole = depth_boundary_errors(pred, gt, valid)
    assert torch.isnan(whole[0][2]) and not torch.isnan(whole[0][[0, 1, 3, 4]]).any()
    one = [depth_boundary_errors(pred[i:i + 1], gt[i:i + 1], valid[i:i + 1]) for i in range(5)]
    monkeypatch.setattr(boundary, "_CHUNK_PIXELS", 1)  # one map per chunk
    chunked = depth_boundary_errors(pred, gt, valid)
    for got in (chunked, (torch.cat([o[0] for o in one]), torch.cat([o[1] for o in one]))):
        torch.testing.assert_close(got[0], whole[0], equal_nan=True)
        torch.testing.assert_close(got[1], whole[1], equal_nan=True)


def test_no_edge_next_to_invalid_pixels() -> None:
    rng = np.random.default_rng(5)
    depth = torch.from_numpy(_scenes(rng, 3, 48, 64))
    valid = torch.ones_like(depth, dtype=torch.bool)
    valid[:, 10:30, 20:25] = False
    valid[1, :, 40:] = False
    lo, hi = depth.amin((1, 2), keepdim=True), depth.amax((1, 2), keepdim=True)
    x = (depth - lo) / (hi - lo)
    edges = canny(x, valid=valid)
    near_invalid = torch.nn.functional.max_pool2d((~valid).float()[:, None], 3, 1, 1)[:, 0] > 0
    assert edges.any() and not (edges & near_invalid).any()
    assert not edges[:, [0, -1]].any() and not edges[:, :, [0, -1]].any()


# --- Canny against scikit-image ---------------------------------------------------------------

def _synthetic(rng: np.random.Generator, plateaus: bool) -> list[np.ndarray]:
    """Synthetic images in [0, 1]: steps at several angles, smooth ramps, blobs, smooth noise, boxes.

    With ``plateaus``, also linear ramps, whose gradient magnitude is one constant (a plateau
    between the thresholds at the iBims settings: weak pixels with no strong one, so no edges).
    """
    h, w = 64, 80
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    images = []
    for angle in (0, 17, 45, 73, 120):
        t = math.radians(angle)
        # anti-aliased: a step exactly between two pixel columns makes both tie, and which one
        # survives non-maximum suppression is float round-off, in skimage as here
        images.append(np.clip(0.5 + np.cos(t) * (xx - 40.3) + np.sin(t) * (yy - 32.6), 0, 1))
    images.append(np.tanh((xx - 35) / 6) + 0.5 * np.tanh((yy - 30) / 3))  # smooth ramps
    blobs = np.zeros((h, w))
    for cy, cx, s, a in ((20, 20, 5, 1.0), (40, 55, 8, 0.7), (50, 15, 3, 0.5)):
        blobs += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    images.append(blobs)
    for s in (2, 4):
        images.append(ndimage.gaussian_filter(rng.random((h, w)), s))
    images.extend(_scenes(rng, 2, h, w))
    if plateaus:
        images.append(np.clip((xx - 20) / 30, 0, 1))
        images.append(np.clip((xx - 20) / 30, 0, 1) * 0.5 + np.clip(yy - 40.3, 0, 1) * 0.5)
    return [((x - x.min()) / (x.max() - x.min())).astype(np.float32) for x in images]


def _f_score(a: np.ndarray, b: np.ndarray, tol: int = 1) -> float:
    """Symmetric F-score of two edge sets, a pixel matching when the other set is within ``tol``."""
    if not a.any() and not b.any():
        return 1.0
    grow = np.ones((2 * tol + 1, 2 * tol + 1), dtype=bool)
    precision = (a & ndimage.binary_dilation(b, grow)).sum() / max(a.sum(), 1)
    recall = (b & ndimage.binary_dilation(a, grow)).sum() / max(b.sum(), 1)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("low,high", [(0.15, 0.3), (0.05, 0.1)])
@pytest.mark.parametrize("masked", [False, True])
def test_canny_agrees_with_skimage(low: float, high: float, masked: bool) -> None:
    feature = pytest.importorskip("skimage.feature", reason=CANNY_REFERENCE)
    rng = np.random.default_rng(6)
    # plateaus only at the iBims thresholds: above the high threshold, which plateau pixels
    # survive non-maximum suppression is float round-off in skimage too
    images = _synthetic(rng, plateaus=low == 0.15)
    masks = [None] * len(images)
    if masked:
        masks = [rng.random(x.shape) > 0.01 for x in images]
        for m in masks:
            m[20:30, 30:45] = False
    got = canny(torch.from_numpy(np.stack(images)), SIGMA, low, high,
                None if not masked else torch.from_numpy(np.stack(masks)))
    differ = union = 0
    for x, m, g in zip(images, masks, got.numpy()):
        ref = feature.canny(x, sigma=SIGMA, low_threshold=low, high_threshold=high, mask=m)
        assert _f_score(g, ref) >= 0.98
        differ += (g != ref).sum()
        union += (g | ref).sum()
    assert union > 1000
    assert differ <= 0.01 * union  # measured: identical


def test_dbe_equals_reference_pipeline() -> None:
    """End to end against skimage Canny on min/max-normalised maps plus scipy distances."""
    feature = pytest.importorskip("skimage.feature", reason=CANNY_REFERENCE)
    rng = np.random.default_rng(7)
    h, w = 56, 72
    gt = _scenes(rng, 6, h, w)
    pred = ndimage.gaussian_filter(gt, (0, 1.5, 1.5)) + 0.01 * rng.standard_normal(gt.shape).astype(np.float32)
    pred[1] = np.roll(gt[1], 3, axis=1)
    valid = np.ones(gt.shape, dtype=bool)
    valid[2, 20:30, 10:40] = False
    valid[3, :, :8] = False

    def edges(x: np.ndarray, v: np.ndarray) -> np.ndarray:
        lo, hi = x[v].min(), x[v].max()
        return feature.canny(np.where(v, (x - lo) / (hi - lo), 0).astype(np.float32), sigma=SIGMA,
                             low_threshold=0.15, high_threshold=0.3, mask=v)

    ref = np.array([_reference_chamfer(edges(p, v), edges(g, v)) for p, g, v in zip(pred, gt, valid)])
    acc, comp = depth_boundary_errors(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(valid))
    assert not np.isnan(ref).any()
    np.testing.assert_allclose(acc.numpy(), ref[:, 0], rtol=0, atol=0.05)
    np.testing.assert_allclose(comp.numpy(), ref[:, 1], rtol=0, atol=0.05)


# --- kornia's filters where they give the reference's result, hand-written code where not -------

def test_kornia_gaussian_and_sobel_equal_scipy() -> None:
    """The smoothing and gradients come from kornia; skimage's Canny computes them with scipy."""
    rng = np.random.default_rng(8)
    maps = np.stack(_synthetic(rng, plateaus=False))
    smoothed = boundary._gaussian(torch.from_numpy(maps), SIGMA)
    ref = np.stack([ndimage.gaussian_filter(m.astype(np.float64), SIGMA, mode="constant", truncate=4.0)
                    for m in maps])
    np.testing.assert_allclose(smoothed.numpy(), ref, rtol=0, atol=2e-6)
    gj, gi = boundary._sobel(smoothed).unbind(1)
    s = smoothed.numpy().astype(np.float64)
    np.testing.assert_allclose(gi.numpy(), np.stack([ndimage.sobel(m, axis=0) for m in s]), rtol=0, atol=4e-6)
    np.testing.assert_allclose(gj.numpy(), np.stack([ndimage.sobel(m, axis=1) for m in s]), rtol=0, atol=4e-6)


def test_kornia_canny_is_not_the_reference() -> None:
    """Why non-maximum suppression and hysteresis stay hand-written: with skimage's σ, window and
    thresholds, ``kornia.filters.canny`` marks edges on the image border (skimage never does) and,
    rounding the gradient direction to 45° where skimage interpolates, other pixels inside."""
    feature = pytest.importorskip("skimage.feature", reason=CANNY_REFERENCE)
    images = _synthetic(np.random.default_rng(6), plateaus=False)
    x = torch.from_numpy(np.stack(images))
    r = int(4 * SIGMA + 0.5)
    _, theirs = kornia.filters.canny(x[:, None], 0.15, 0.3, kernel_size=2 * r + 1, sigma=(SIGMA, SIGMA))
    theirs = theirs[:, 0].numpy() > 0
    ref = np.stack([feature.canny(im, sigma=SIGMA, low_threshold=0.15, high_threshold=0.3) for im in images])
    ours = canny(x, SIGMA, 0.15, 0.3).numpy()
    assert (ours != ref).sum() <= 0.01 * (ours | ref).sum()  # measured: identical
    border = np.ones(ref.shape[1:], dtype=bool)
    border[1:-1, 1:-1] = False
    assert not ref[:, border].any() and theirs[:, border].any()
    inner = (slice(None), slice(r + 2, -r - 2), slice(r + 2, -r - 2))  # clear of any border effect
    assert (theirs[inner] != ref[inner]).sum() > 0.05 * (theirs[inner] | ref[inner]).sum()


def test_kornia_sobel_magnitude_is_not_the_reference() -> None:
    """Why the gradient magnitude is computed here: ``kornia.filters.sobel`` takes
    sqrt(gx² + gy² + 1e-6), not skimage's hypot. Thresholds scale with each map's depth range
    (``_thresholds``), so on a shallow map the 1e-3 floor is the size of a real edge."""
    step = torch.from_numpy(_step(12, 16, 7, low=0.0, high=0.001))  # a 1 mm step
    theirs = kornia.filters.sobel(step[None, None], normalized=False)[0, 0].numpy()
    gj, gi = boundary._sobel(step[None]).unbind(1)
    ref = np.hypot(ndimage.sobel(step.numpy(), axis=0), ndimage.sobel(step.numpy(), axis=1))
    np.testing.assert_allclose(torch.hypot(gi, gj)[0].numpy(), ref, rtol=0, atol=1e-8)
    assert ref[:, 0].max() == 0 and theirs[:, 0].min() == pytest.approx(1e-3, rel=1e-3)
    lo, _ = boundary._thresholds(step[None], None, 0.15, 0.3)
    assert theirs[:, 0].min() > lo.item() > ref[:, 0].max()  # a flat pixel would pass the low threshold
