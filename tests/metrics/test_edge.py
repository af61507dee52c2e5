"""Edge metrics: NMS thinning, tolerance matching counts, ODS / OIS / AP.

Hand cases use 256×256 images, where the matching radius is r = 0.011·√(256²+256²) = 3.98 px:
offsets of 3 px match, 4 px do not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from mtlbench.metrics import EdgeMetrics
from mtlbench.metrics.edge import edge_counts, ods_ois_ap, thin, threshold_values

N = 256
RADIUS = 0.011 * math.hypot(N, N)



def _canvas(b: int = 1) -> torch.Tensor:
    return torch.zeros(b, N, N)


def _score(pred: torch.Tensor, gt: torch.Tensor, **kw) -> dict[str, float]:
    m = EdgeMetrics(**kw)
    m.update(pred, {"edge": gt})
    return m.compute()


def _f(p: float, r: float) -> float:
    return 2 * p * r / (p + r)


# --------------------------------------------------------------------------- matching


def test_radius_is_what_the_hand_cases_assume():
    assert 3.98 < RADIUS < 3.99


@pytest.mark.parametrize("shift, matched", [(0, True), (1, True), (3, True), (-3, True), (4, False), (6, False)])
def test_shifted_line_matches_only_within_tolerance(shift, matched):
    # 1-px vertical GT line; the same line shifted sideways, through the default NMS
    gt, pred = _canvas(), _canvas()
    gt[0, 40:200, 100] = 1
    pred[0, 40:200, 100 + shift] = 1
    s = _score(pred, gt)
    want = 1.0 if matched else 0.0
    assert s["ods"] == pytest.approx(want) and s["ois"] == pytest.approx(want)
    assert s["ods_precision"] == pytest.approx(want) and s["ods_recall"] == pytest.approx(want)


@pytest.mark.parametrize("dy, dx", [(0, 3), (2, 3), (1, 3), (3, 3), (0, 4), (2, 4)])
def test_single_pixels_match_by_euclidean_distance(dy, dx):
    gt, pred = _canvas(), _canvas()
    gt[0, 100, 100] = 1
    pred[0, 100 + dy, 100 + dx] = 1
    c = edge_counts(pred[:, :, :], gt.bool())
    hit = int(math.hypot(dy, dx) <= RADIUS)  # (3, 3) is 4.24 px: outside although each axis is 3
    assert c[0, :, 0].tolist() == [hit, 1, hit, 1]


def test_half_covered_line_hand_precision_recall():
    # GT rows 50..149; prediction rows 50..99 only. GT rows 100..102 lie within 1..3 px of the
    # prediction's end (row 99), row 103 is 4 px away: 53 of 100 GT pixels matched, P = 1.
    gt, pred = _canvas(), _canvas()
    gt[0, 50:150, 128] = 1
    pred[0, 50:100, 128] = 1
    s = _score(pred, gt, nms=False)
    assert s["ods_precision"] == pytest.approx(1.0)
    assert s["ods_recall"] == pytest.approx(0.53)
    assert s["ods"] == pytest.approx(_f(1.0, 0.53))
    assert s["ois"] == pytest.approx(_f(1.0, 0.53))


def test_two_confidence_levels_give_the_known_best_threshold():
    # GT: col 128 rows 50..149. Prediction: rows 50..99 of it at 0.8, rows 100..149 at 0.3, and
    # a false line (col 30, 100 px) at 0.6.
    #   t <= 0.30        : P = 100/200, R = 1      F = 2/3
    #   0.30 < t <= 0.60 : P = 50/150,  R = 0.53   F = 0.4077
    #   0.60 < t <= 0.80 : P = 1,       R = 0.53   F = 0.6928  (best)
    #   t > 0.80         : nothing, P = R = 0
    # Along 0.60 → 0.61 R is constant and P rises, so the best F is reached at 0.61 and stays on
    # the plateau up to 0.80; which plateau sample wins is decided by last-bit rounding (the
    # toolbox's arithmetic, kept), so only "at the start of the plateau" is asserted.
    gt, pred = _canvas(), _canvas()
    gt[0, 50:150, 128] = 1
    pred[0, 50:100, 128] = 0.8
    pred[0, 100:150, 128] = 0.3
    pred[0, 50:150, 30] = 0.6
    m = EdgeMetrics(nms=False)
    m.update(pred, {"edge": gt})
    s = m.compute()
    assert s["ods"] == pytest.approx(_f(1.0, 0.53))
    assert (s["ods_precision"], s["ods_recall"]) == pytest.approx((1.0, 0.53))
    assert 0.61 <= s["ods_threshold"] < 0.62
    curve = m.curve()
    t = np.array(curve["threshold"])
    assert curve["precision"][29] == pytest.approx(0.5) and t[29] == pytest.approx(0.30)
    assert curve["precision"][30] == pytest.approx(1 / 3) and curve["recall"][30] == pytest.approx(0.53)
    assert curve["fscore"][60] == pytest.approx(_f(1.0, 0.53))
    assert curve["precision"][80] == 0.0 and curve["recall"][80] == 0.0


def test_ois_picks_each_images_threshold_ods_one_for_all():
    # image A: GT line at 0.9 plus a 100-px false line at 0.5 → best alone for t in (0.5, 0.9]
    # image B: GT line at 0.4 only                            → best alone for t <= 0.4
    # OIS: both perfect → 1. ODS (summed): t <= 0.4: P = 200/300, R = 1 → F = 0.8;
    # (0.4, 0.5]: P = 100/200, R = 0.5; (0.5, 0.9]: P = 1, R = 0.5 → F = 2/3. Best 0.8 at 0.01.
    gt, pred = _canvas(2), _canvas(2)
    gt[:, 50:150, 128] = 1
    pred[0, 50:150, 128] = 0.9
    pred[0, 50:150, 30] = 0.5
    pred[1, 50:150, 128] = 0.4
    s = _score(pred, gt, nms=False)
    assert s["ois"] == pytest.approx(1.0)
    assert s["ods"] == pytest.approx(0.8)
    assert (s["ods_precision"], s["ods_recall"], s["ods_threshold"]) == pytest.approx((2 / 3, 1.0, 0.01))


# --------------------------------------------------------------------------- ods_ois_ap on counts


def _counts(cnt_p, sum_p, cnt_r, sum_r) -> torch.Tensor:
    return torch.tensor([[cnt_p, sum_p, cnt_r, sum_r]], dtype=torch.int64)


def test_ods_interpolates_between_thresholds_ois_does_not():
    # K = 2 (t = 1/3, 2/3): (P, R) = (0.2, 1) then (1, 0.2), F = 1/3 at both. Along the segment
    # P + R = 1.2 and the F peak is at P = R = 0.6; the 100 samples (A = i/99) miss A = 0.5 by
    # half a step: δ = 0.8·0.5/99, F = (0.72 - 2δ²)/1.2.
    s = ods_ois_ap(_counts([20, 20], [100, 20], [100, 20], [100, 100]))
    delta = 0.8 * 0.5 / 99
    assert s["ods"] == pytest.approx((0.72 - 2 * delta**2) / 1.2, rel=1e-12)
    assert s["ods_threshold"] == pytest.approx(0.5, abs=0.5 / 99 / 3 + 1e-12)
    # OIS uses the image's best threshold without interpolation (first of the tie): P 0.2, R 1
    assert s["ois"] == pytest.approx(1 / 3) and s["ois_precision"] == pytest.approx(0.2)


def test_ap_hand_curve():
    # K = 4: (R, P) = (1, .5), (.5, .8), (.5, 1), (0, 0 — nothing predicted). Of the two points at
    # R = .5 the higher threshold's (P = 1) is kept. P(q) = 2q on [0, .5], 1.5 - q on [.5, 1]:
    # Σ_{i=0..50} 2i/100 = 25.5, Σ_{j=1..50} (1 - j/100) = 37.25 → AP = 62.75 / 100.
    s = ods_ois_ap(_counts([100, 40, 30, 0], [200, 50, 30, 0], [100, 50, 50, 0], [100] * 4))
    assert s["ap"] == pytest.approx(0.6275, rel=1e-12)


def test_ap_only_where_recall_range_covers_and_zero_for_a_single_recall():
    # recalls .2 → .6 at P .5 constant: q = .20, .21, …, .60 → 41 values of .5 → AP = .205
    s = ods_ois_ap(_counts([50, 50], [100, 100], [60, 20], [100, 100]))
    assert s["ap"] == pytest.approx(0.205, rel=1e-12)
    # a binary map has one recall at every threshold: the toolbox reports AP 0
    s = ods_ois_ap(_counts([10] * 5, [10] * 5, [10] * 5, [10] * 5))
    assert s["ap"] == 0.0 and s["ods"] == pytest.approx(1.0)


def test_no_predictions_and_no_gt_give_zero_not_nan():
    s = ods_ois_ap(torch.zeros(3, 4, 99, dtype=torch.int64))
    assert all(v == 0.0 or k == "ods_threshold" for k, v in s.items())


# --------------------------------------------------------------------------- edge_counts vs brute force


def _brute_counts(prob: np.ndarray, gt: np.ndarray, tolerance: float, k: int) -> np.ndarray:
    """Explicit loop over thresholds with scipy's exact EDT, both directions."""
    b, h, w = prob.shape
    r = tolerance * math.hypot(h, w)
    out = np.zeros((b, 4, k), np.int64)
    for i in range(b):
        g = gt[i]
        dist_g = ndimage.distance_transform_edt(~g) if g.any() else np.full(g.shape, np.inf)
        for j in range(1, k + 1):
            e = prob[i].astype(np.float64) >= j / (k + 1)
            dist_e = ndimage.distance_transform_edt(~e) if e.any() else np.full(e.shape, np.inf)
            out[i, :, j - 1] = [(e & (dist_g <= r)).sum(), e.sum(), (g & (dist_e <= r)).sum(), g.sum()]
    return out


@pytest.mark.parametrize("shape, tolerance, k", [((3, 40, 52), 0.05, 9), ((2, 64, 64), 0.011, 99),
                                                 ((2, 33, 70), 0.1, 20), ((1, 30, 30), 0.0, 5)])
def test_edge_counts_equal_brute_force(shape, tolerance, k):
    gen = torch.Generator().manual_seed(sum(shape) + k)
    prob = torch.rand(shape, generator=gen) ** 3
    gt = torch.rand(shape, generator=gen) < 0.05
    gt[0] = False  # an image without edges
    got = edge_counts(prob, gt, tolerance, k)
    assert got.dtype == torch.int64 and got.shape == (shape[0], 4, k)
    np.testing.assert_array_equal(got.numpy(), _brute_counts(prob.numpy(), gt.numpy(), tolerance, k))


def test_thresholds_are_k_over_k_plus_one_inclusive():
    assert threshold_values(99)[[0, 49, 98]].tolist() == pytest.approx([0.01, 0.5, 0.99])
    prob = torch.tensor([[[0.5, 0.49, 0.99, 1.0, 0.0]]])
    c = edge_counts(prob, torch.zeros_like(prob, dtype=torch.bool), 0.0, 99)
    assert c[0, 1, [48, 49, 50, 98]].tolist() == [4, 3, 2, 2]  # ≥0.49, ≥0.50, ≥0.51, ≥0.99


# --------------------------------------------------------------------------- thin


def _reference_thin(e: np.ndarray) -> np.ndarray:
    """Per-pixel port of edgesDetect's orientation + edgesNmsMex, written from its description."""
    h, w = e.shape
    tri = np.array([1, 2, 3, 4, 5, 4, 3, 2, 1], np.float64) / 25
    s = np.pad(e, 4, mode="symmetric")
    s = ndimage.correlate1d(ndimage.correlate1d(s, tri, axis=1), tri, axis=0)[4:-4, 4:-4]
    oy, ox = np.gradient(s)
    oxy, oyy = np.gradient(oy, axis=1), np.gradient(oy, axis=0)
    oxx = np.gradient(ox, axis=1)
    o = np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + 1e-5)), np.pi)

    def interp(x: float, y: float) -> float:
        x = min(max(x, 0.0), w - 1.001)
        y = min(max(y, 0.0), h - 1.001)
        x0, y0 = int(x), int(y)
        dx, dy = x - x0, y - y0
        return (e[y0, x0] * (1 - dx) * (1 - dy) + e[y0, x0 + 1] * dx * (1 - dy)
                + e[y0 + 1, x0] * (1 - dx) * dy + e[y0 + 1, x0 + 1] * dx * dy)

    out = e.copy()
    for y in range(h):
        for x in range(w):
            v = e[y, x] * 1.01
            for d in (-1, 1):
                if v < interp(x + d * math.cos(o[y, x]), y + d * math.sin(o[y, x])):
                    out[y, x] = 0
    for i in range(5):
        out[:, i] *= i / 5
        out[:, w - 1 - i] *= i / 5
        out[i, :] *= i / 5
        out[h - 1 - i, :] *= i / 5
    return out


def test_thin_equals_per_pixel_reference():
    gen = torch.Generator().manual_seed(3)
    noise = torch.rand(1, 1, 30, 34, generator=gen)
    prob = torch.nn.functional.avg_pool2d(noise, 3, 1, 1, count_include_pad=False)[:, 0]
    got = thin(prob)[0].double().numpy()
    want = _reference_thin(prob[0].double().numpy())
    assert (got > 0).sum() > 20  # some ridges survive, most pixels do not
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_thin_blurred_vertical_line_to_one_pixel_at_the_ridge():
    x = torch.arange(48.0)
    prob = torch.exp(-((x - 24) ** 2) / (2 * 2.0**2)).expand(1, 48, 48).contiguous()
    out = thin(prob)[0]
    inner = out[5:-5]
    assert (inner > 0).sum(1).tolist() == [1] * 38
    assert torch.all(inner[:, 24] == 1.0)


def test_thin_blurred_diagonal_line_to_one_pixel_at_the_ridge():
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    prob = torch.exp(-((xx - yy) ** 2) / 2 / 2)[None]  # perpendicular σ = 1 px
    out = thin(prob)[0]
    inner = out[5:-5, 5:-5]
    assert torch.equal(inner > 0, torch.eye(38, dtype=torch.bool))


def test_thin_constant_map_keeps_everything_but_attenuates_the_border():
    # no ridge to find: nothing is suppressed; the border ramp is min(d, 5)/5 per axis
    out = thin(torch.full((1, 32, 32), 0.7))[0]
    d = torch.minimum(torch.arange(32), 31 - torch.arange(32)).clamp(max=5) / 5
    assert torch.allclose(out, 0.7 * d[:, None] * d[None, :], rtol=1e-6, atol=0)
    assert out[16, 16] == pytest.approx(0.7) and out[2, 16] == pytest.approx(0.28)
    assert out[0].abs().sum() == 0 and out[2, 2] == pytest.approx(0.7 * 0.16)
    assert thin(torch.zeros(2, 20, 20)).abs().sum() == 0


# --------------------------------------------------------------------------- the metric


def test_batch_composition_does_not_matter():
    gen = torch.Generator().manual_seed(0)
    prob = torch.rand(4, 1, 48, 40, generator=gen)
    edge = (torch.rand(4, 1, 48, 40, generator=gen) < 0.1).float()
    whole, split = EdgeMetrics(), EdgeMetrics()
    whole.update(prob, {"edge": edge})
    for i in range(4):
        split.update(prob[i:i + 1, 0], {"edge": edge[i:i + 1, 0]})  # B×H×W works too
    assert torch.equal(torch.cat(whole._counts), torch.cat(split._counts))
    assert whole.compute() == split.compute()
    assert set(whole.compute()) == set(EdgeMetrics.names)


def test_metric_empty_reset_and_direction():
    m = EdgeMetrics()
    assert m.compute() == {} and m.curve()["precision"] == []
    gt = _canvas()
    gt[0, 40:200, 100] = 1
    m.update(gt.clone(), {"edge": gt})
    assert len(m.curve()["threshold"]) == 99
    m.reset()
    assert m.compute() == {}
    # the threshold is an operating point, not a score: no direction
    assert m.higher_is_better == {"ods", "ois", "ap", "ods_precision", "ods_recall"}
    with pytest.raises(ValueError):
        m.update(torch.zeros(2, 3, 8, 8), {"edge": torch.zeros(2, 3, 8, 8)})


def test_a_flat_band_survives_thinning_and_lowers_precision():
    # documented difference from the toolbox (which thins the band to a line): a plateau of equal
    # values is not suppressed by NMS; at 256×256 (r = 3.98 px) 7 of its 11 columns lie within r
    prob = torch.zeros(1, 256, 256)
    prob[0, :, 123:134] = 0.99
    gt = torch.zeros(1, 256, 256)
    gt[0, :, 128] = 1.0
    assert (thin(prob)[0, 128] > 0).sum() == 11
    m = EdgeMetrics()
    m.update(prob, {"edge": gt})
    got = m.compute()
    assert got["ods_precision"] == pytest.approx(7 / 11) and got["ods_recall"] == pytest.approx(1.0)
