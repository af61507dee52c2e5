"""Depth metrics: hand cases, both conventions, Eigen crop, float64 exactness (SILog of a constant
ratio, δ ties), bad predictions, against an independent numpy derivation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlbench.errors import BadPredictionError
from mtlbench.metrics import DepthMetrics
from mtlbench.metrics.depth import eigen_mask

# max_depth 10, min_depth 0.5; 1×1×2×4. Pixel by pixel (pred clipped to [0.5, 10]):
#   gt 2, pred 2.2        err 0.2  sq 0.04   rel 0.1     ratio 1.1  → δ1 δ2 δ3
#   gt 2, pred 3.0        err 1.0  sq 1      rel 0.5     ratio 1.5  → δ2 δ3   (1.25 < 1.5 < 1.5625)
#   gt 2, pred 3.8        err 1.8  sq 3.24   rel 0.9     ratio 1.9  → δ3      (1.5625 < 1.9 < 1.953125)
#   gt 4, pred 1.0        err 3.0  sq 9      rel 0.75    ratio 4    → none    (gt/pred)
#   gt 5, pred 20 → 10    err 5.0  sq 25     rel 1.0     ratio 2    → none
#   gt 0, pred 7          invalid (no measurement)
#   gt 12, pred 3         invalid (beyond max_depth)
#   gt 8, pred -1 → 0.5   err 7.5  sq 56.25  rel 0.9375  ratio 16   → none
# n = 6; Σerr = 18.5; Σsq = 94.53; Σrel = 4.1875; Σsq/g = 0.02+0.5+1.62+2.25+5+7.03125; δ counts 1, 2, 3.
DEPTH_GT = torch.tensor([[[[2.0, 2.0, 2.0, 4.0], [5.0, 0.0, 12.0, 8.0]]]])
DEPTH_PRED = torch.tensor([[[[2.2, 3.0, 3.8, 1.0], [20.0, 7.0, 3.0, -1.0]]]])
# ln(p/g) of the six valid pixels
LOGS = [math.log(1.1), math.log(1.5), math.log(1.9), math.log(0.25), math.log(2.0), math.log(0.0625)]
DEPTH_EXPECTED = {
    "mae": 18.5 / 6,
    "rmse": math.sqrt(94.53 / 6),
    "abs_rel": 4.1875 / 6,
    "sq_rel": (0.02 + 0.5 + 1.62 + 2.25 + 5 + 7.03125) / 6,
    "rmse_log": math.sqrt(sum(d * d for d in LOGS) / 6),
    "log10": sum(abs(d) for d in LOGS) / 6 / math.log(10),
    "silog": 100 * math.sqrt(sum(d * d for d in LOGS) / 6 - (sum(LOGS) / 6) ** 2),
    "delta1": 1 / 6,
    "delta2": 2 / 6,
    "delta3": 3 / 6,
    "mae_norm": 18.5 / 6 / 10,
    "rmse_norm": math.sqrt(94.53 / 6) / 10,
}


def _approx(expected: dict[str, float], rel: float = 1e-6) -> dict:
    return {k: pytest.approx(v, rel=rel, abs=1e-9) for k, v in expected.items()}


def _pick(got: dict[str, float], keys) -> dict[str, float]:
    return {k: got[k] for k in keys}


def test_hand_case_pooled():
    m = DepthMetrics(max_depth=10.0, min_depth=0.5, boundaries=False)
    m.update(DEPTH_PRED, {"depth": DEPTH_GT})
    got = m.compute()
    # float64 throughout: the hand values to the last digits (the inputs are float32 roundings of
    # the decimals above, hence 1e-7 and not 1e-15)
    assert _pick(got, DEPTH_EXPECTED) == _approx(DEPTH_EXPECTED, rel=1e-7)
    # one image: the per-image convention gives the same numbers
    for k in ("mae", "rmse", "abs_rel", "silog", "delta2"):
        assert got[f"{k}_img"] == pytest.approx(got[k], rel=1e-9)
    assert "dbe_acc" not in got and set(got) == set(m.names)


def test_pooled_and_per_image_differ_as_defined():
    # image A: 1 valid pixel, error 2 (gt 2, pred 4); image B: 3 valid pixels, error 0.
    gt = torch.tensor([[[2.0, 0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0, 0.0]]])
    pred = torch.tensor([[[4.0, 5.0, 5.0, 5.0]], [[1.0, 1.0, 1.0, 9.0]]])
    m = DepthMetrics(boundaries=False)
    m.update(pred, {"depth": gt})
    got = m.compute()
    assert got["mae"] == pytest.approx(2 / 4)  # pooled: 2 over 4 pixels
    assert got["mae_img"] == pytest.approx((2 + 0) / 2)  # per image: (2 + 0) / 2 images
    assert got["rmse"] == pytest.approx(math.sqrt(4 / 4))
    assert got["rmse_img"] == pytest.approx((2 + 0) / 2)
    assert got["abs_rel"] == pytest.approx(1 / 4)
    assert got["abs_rel_img"] == pytest.approx(1 / 2)
    assert got["delta1"] == pytest.approx(3 / 4)
    assert got["delta1_img"] == pytest.approx((0 + 1) / 2)


def test_image_without_valid_pixels_is_not_counted_per_image():
    gt = torch.tensor([[[2.0, 2.0]], [[0.0, 0.0]]])
    pred = torch.tensor([[[3.0, 3.0]], [[1.0, 1.0]]])
    m = DepthMetrics(boundaries=False)
    m.update(pred, {"depth": gt})
    assert m.compute()["mae_img"] == pytest.approx(1.0)


def test_eigen_mask_rows_and_columns():
    m = eigen_mask(480, 640)
    rows, cols = m.any(1).nonzero().squeeze(1), m.any(0).nonzero().squeeze(1)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (45, 470, 41, 600)
    assert m.sum() == (471 - 45) * (601 - 41)
    # a 240×320 resize of the frame: the crop scales with it
    half = eigen_mask(240, 320)
    rows = half.any(1).nonzero().squeeze(1)
    assert rows.min() == round(45 / 2) and rows.max() == round(471 / 2) - 1


def test_eigen_crop_ignores_pixels_outside():
    gt = torch.full((1, 480, 640), 3.0)
    pred = gt.clone()
    pred[:, :45] = 6.0  # wrong only in the top band the crop leaves out
    m = DepthMetrics(boundaries=False, eigen_crop=True)
    m.update(pred, {"depth": gt})
    assert m.compute()["rmse"] == 0.0
    m = DepthMetrics(boundaries=False)
    m.update(pred, {"depth": gt})
    assert m.compute()["rmse"] == pytest.approx(3 * math.sqrt(45 / 480))


def test_cap_and_min_depth():
    gt = torch.tensor([[[0.5, 2.0, 9.0]]])
    pred = torch.tensor([[[0.5, 9.0, 9.0]]])
    m = DepthMetrics(max_depth=10.0, min_depth=1.0, cap=8.0, boundaries=False)
    m.update(pred, {"depth": gt})
    got = m.compute()  # only gt 2 counts (0.5 <= min, 9 > cap); pred 9 clipped to 8
    assert got["mae"] == pytest.approx(6.0)
    assert got["mae_norm"] == pytest.approx(0.6)  # normalised by max_depth, not the cap
    with pytest.raises(ValueError, match="empty"):
        DepthMetrics(min_depth=5.0, cap=4.0)


def _reference_np(pred: np.ndarray, gt: np.ndarray, cap: float, min_depth: float) -> dict:
    """Independent numpy derivation: per image, then pooled by concatenation."""
    def metrics(p: np.ndarray, g: np.ndarray) -> dict:
        d = np.log(p) - np.log(g)
        ratio = np.maximum(p / g, g / p)
        return {
            "mae": np.mean(np.abs(p - g)), "rmse": np.sqrt(np.mean((p - g) ** 2)),
            "abs_rel": np.mean(np.abs(p - g) / g), "sq_rel": np.mean((p - g) ** 2 / g),
            "rmse_log": np.sqrt(np.mean(d**2)), "log10": np.mean(np.abs(np.log10(p) - np.log10(g))),
            "silog": np.sqrt(np.mean(d**2) - np.mean(d) ** 2) * 100,
            "delta1": np.mean(ratio < 1.25), "delta2": np.mean(ratio < 1.25**2), "delta3": np.mean(ratio < 1.25**3),
        }

    ps, gs, per = [], [], []
    for p_img, g_img in zip(pred.astype(np.float64), gt.astype(np.float64)):
        valid = (g_img > min_depth) & (g_img <= cap)
        if not valid.any():
            continue
        p = np.clip(p_img[valid], min_depth, cap)
        ps.append(p)
        gs.append(g_img[valid])
        per.append(metrics(p, g_img[valid]))
    out = metrics(np.concatenate(ps), np.concatenate(gs))
    out.update({f"{k}_img": np.mean([m[k] for m in per]) for k in per[0]})
    return out


def test_streaming_equals_concatenation_and_numpy():
    gen = torch.Generator().manual_seed(0)
    gt_a = torch.rand(2, 1, 6, 7, generator=gen) * 14.0  # part of it beyond the cap of 10
    gt_b = torch.rand(3, 1, 6, 7, generator=gen) * 14.0
    gt_a[0, 0, :2] = 0.0
    gt_b[1] = 0.0  # an image with no valid pixel
    pred_a = gt_a * (0.6 + 0.8 * torch.rand(gt_a.shape, generator=gen)) - 0.5
    pred_b = gt_b * (0.6 + 0.8 * torch.rand(gt_b.shape, generator=gen)) + 0.5

    streamed = DepthMetrics(10.0, boundaries=False)
    streamed.update(pred_a, {"depth": gt_a})
    streamed.update(pred_b, {"depth": gt_b})
    once = DepthMetrics(10.0, boundaries=False)
    once.update(torch.cat([pred_a, pred_b]), {"depth": torch.cat([gt_a, gt_b])})
    got = streamed.compute()
    # every term and sum is float64: batch composition changes nothing beyond float64 rounding
    assert got == _approx(once.compute(), rel=1e-12)
    ref = _reference_np(torch.cat([pred_a, pred_b]).squeeze(1).numpy(), torch.cat([gt_a, gt_b]).squeeze(1).numpy(),
                        10.0, 1e-3)
    assert _pick(got, ref) == _approx(ref, rel=1e-10)

    streamed.reset()
    assert streamed.compute() == {}


def test_scale_invariance_of_ratios():
    # every length doubled (and the cap with it): errors in metres double, ratios stay
    m1 = DepthMetrics(max_depth=10.0, min_depth=0.5, boundaries=False)
    m1.update(DEPTH_PRED, {"depth": DEPTH_GT})
    m2 = DepthMetrics(max_depth=20.0, min_depth=1.0, boundaries=False)
    m2.update(2 * DEPTH_PRED, {"depth": 2 * DEPTH_GT})
    a, b = m1.compute(), m2.compute()
    for k in ("mae", "rmse", "sq_rel"):
        assert b[k] == pytest.approx(2 * a[k], rel=1e-12)
    for k in ("abs_rel", "delta1", "delta3", "silog", "rmse_log", "log10", "mae_norm", "rmse_norm"):
        assert b[k] == pytest.approx(a[k], rel=1e-12)


# ------------------------------------------------------------------------------------ float64 exactness


def test_constant_ratio_at_480x640_is_exact():
    # the audit's repro: a prediction exactly twice the ground truth on a full frame. d = ln 2 at
    # every pixel, so SILog (a standard deviation of d) is 0; float32 per-image sums gave 2.8
    g = torch.full((1, 1, 480, 640), 3.0)
    m = DepthMetrics(boundaries=False)
    m.update(2 * g, {"depth": g})
    got = m.compute()
    assert abs(got["silog"]) <= 1e-9 and abs(got["silog_img"]) <= 1e-9
    assert got["log10"] == pytest.approx(math.log10(2), abs=1e-12)
    assert got["rmse_log"] == pytest.approx(math.log(2), rel=1e-12)
    assert (got["mae"], got["rmse"], got["abs_rel"], got["sq_rel"]) == (3.0, 3.0, 1.0, 3.0)
    assert (got["delta1"], got["delta2"], got["delta3"]) == (0.0, 0.0, 0.0)  # ratio 2 > 1.25³ = 1.953125


def test_silog_pooled_over_images_and_batches_without_cancellation():
    # image A (two batches of it, 480×640): ratio 2; image B (240×320): ratio 3. Pooled, d takes ln 2
    # on a fraction w = 2·307200 / (2·307200 + 76800) of the pixels and ln 3 on the rest:
    # variance w(1 − w)(ln 3 − ln 2)²; per image each SILog is 0
    a = torch.full((1, 1, 480, 640), 3.0)
    b = torch.full((1, 1, 240, 320), 2.5)
    m = DepthMetrics(boundaries=False)
    m.update(2 * a, {"depth": a})
    m.update(3 * b, {"depth": b})
    m.update(2 * a, {"depth": a})
    w = 2 * 307200 / (2 * 307200 + 76800)
    got = m.compute()
    assert got["silog"] == pytest.approx(100 * math.sqrt(w * (1 - w)) * math.log(1.5), rel=1e-12)
    assert abs(got["silog_img"]) <= 1e-9
    assert got["rmse_log"] == pytest.approx(math.sqrt(w * math.log(2) ** 2 + (1 - w) * math.log(3) ** 2), rel=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_delta_ties_are_out_in_both_directions(k):
    # p/g = 1.25^k exactly (5^k/4^k): max(p/g, g/p) = 1.25^k is not < 1.25^k, whichever side is
    # larger; δ_{k+1} holds both. The neighbouring float32 values are decided exactly too.
    small, large = 4.0**k, 5.0**k
    below = float(np.nextafter(np.float32(large), np.float32(0)))  # large·(1 − 2⁻²⁴): ratio just under
    above = float(np.nextafter(np.float32(large), np.float32(np.inf)))
    pred = torch.tensor([[[small, large, small, below, small, above]]])
    gt = torch.tensor([[[large, small, below, small, above, small]]])
    m = DepthMetrics(max_depth=200.0, boundaries=False)
    for i in range(6):  # one pixel at a time: each pixel's δ on its own
        m.reset()
        m.update(pred[..., i:i + 1], {"depth": gt[..., i:i + 1]})
        got = m.compute()
        inside = i in (2, 3)  # ratio 5^k/4^k·(1 − 2⁻²⁴)
        assert got[f"delta{k}"] == float(inside), (i, got)
        if k < 3:
            assert got[f"delta{k + 1}"] == 1.0
    m.reset()
    m.update(pred, {"depth": gt})
    assert m.compute()[f"delta{k}"] == pytest.approx(2 / 6)


def test_audit_tie_cases():
    # the audit's pair: p = 4, g = 5 used to count for δ1 and p = 5, g = 4 not; now both are out
    for p, g in ((4.0, 5.0), (5.0, 4.0)):
        m = DepthMetrics(boundaries=False)
        m.update(torch.tensor([[[p]]]), {"depth": torch.tensor([[[g]]])})
        got = m.compute()
        assert (got["delta1"], got["delta2"]) == (0.0, 1.0), (p, g)


# ------------------------------------------------------------------------------------ bad predictions


def test_non_finite_predictions_at_valid_pixels_raise_with_their_count():
    gt = torch.full((2, 1, 8, 8), 2.0)
    gt[1, 0, 0] = 0.0  # a row without ground truth: predictions there are not looked at
    pred = gt.clone() + 0.5
    pred[0, 0, 3, 3] = float("nan")
    pred[1, 0, 4, 4] = float("inf")
    pred[1, 0, 5, 5] = -float("inf")
    pred[1, 0, 0, :3] = float("nan")  # invalid ground truth: ignored
    m = DepthMetrics()
    m.update(pred[:1], {"depth": gt[:1]})
    m.update(pred[1:], {"depth": gt[1:]})
    with pytest.raises(BadPredictionError, match=r"depth predictions hold 3 non-finite values .* at valid ground-truth "
                                         r"pixels: a model's predict\(\) must return finite depths"):
        m.compute()
    # the bad pixels were kept out of the sums: what is left is the 0.5 m error of the others
    rows = m._all()
    assert rows is not None and bool(torch.isfinite(rows).all())
    assert float(rows[:, 1].sum() / rows[:, 0].sum()) == pytest.approx(0.5)
    assert int(rows[:, 0].sum()) == 64 + 56 - 3
    m.reset()
    m.update(gt + 0.5, {"depth": gt})
    assert m.compute()["mae"] == pytest.approx(0.5)


def test_nan_only_outside_valid_pixels_is_fine():
    gt = torch.tensor([[[2.0, 0.0, 12.0]]])
    pred = torch.tensor([[[2.5, float("nan"), float("inf")]]])
    m = DepthMetrics(boundaries=False)
    m.update(pred, {"depth": gt})
    assert m.compute()["mae"] == pytest.approx(0.5)


class _Pair:
    """Two processes as the first sees them: sums add the other's state, cat appends its rows."""

    active = True

    def __init__(self, other: DepthMetrics) -> None:
        self.other = other
        self.names = list(other.summed)

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        return t + getattr(self.other, self.names.pop(0))

    def cat(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, self.other._all()])


def test_reduce_over_processes_equals_one_process_bad_count_included():
    gen = torch.Generator().manual_seed(3)
    gt = torch.rand(4, 1, 16, 16, generator=gen) * 9 + 0.5
    pred = gt * (0.8 + 0.4 * torch.rand(gt.shape, generator=gen))
    whole, first, second = (DepthMetrics(boundaries=False) for _ in range(3))
    whole.update(pred, {"depth": gt})
    first.update(pred[:3], {"depth": gt[:3]})
    second.update(pred[3:], {"depth": gt[3:]})
    first.reduce(_Pair(second), torch.device("cpu"))
    assert first.compute() == _approx(whole.compute(), rel=1e-12)
    # a bad pixel on one process only is reported after the reduction
    pred[3, 0, 0, 0] = float("nan")
    first, second = DepthMetrics(boundaries=False), DepthMetrics(boundaries=False)
    first.update(pred[:3], {"depth": gt[:3]})
    second.update(pred[3:], {"depth": gt[3:]})
    first.reduce(_Pair(second), torch.device("cpu"))
    with pytest.raises(ValueError, match="hold 1 non-finite"):
        first.compute()
