"""Exact BSDS edge matching: thinning, the assignment against a dense brute force, hand cases where
one-to-one and many-to-one matching differ, the metric's exact mode, and (when installed) the
compiled BSDS port ``pyedgeeval``.

Hand cases use 256×256 images, where the matching radius at tolerance 0.011 is 3.98 px.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from skimage.morphology import thin as skimage_thin

from mtlbench.metrics import EdgeMetrics
from mtlbench.metrics.bsds import bwmorph_thin, exact_counts, exact_counts_batch, levels
from mtlbench.metrics.bsds_match import OUTLIER_COST, correspond_pixels, match_radius
from mtlbench.metrics.edge import edge_counts, ods_ois_ap

N = 256


def _canvas() -> np.ndarray:
    return np.zeros((N, N), bool)


# --------------------------------------------------------------------------- thinning


def test_bwmorph_thin_equals_scikit_image_on_random_maps():
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = rng.integers(1, 40, 2)
        b = rng.random((h, w)) < rng.random()
        assert np.array_equal(bwmorph_thin(b), skimage_thin(b))


def test_bwmorph_thin_equals_scikit_image_on_thick_strokes():
    yy, xx = np.mgrid[:96, :96]
    blob = (yy - 40) ** 2 + (xx - 50) ** 2 < 400  # a disc
    band = (np.abs(xx - yy) < 4) | ((yy > 70) & (yy < 76))  # a thick diagonal and a 5-px bar
    ring = ((yy - 60) ** 2 + (xx - 30) ** 2 < 300) & ((yy - 60) ** 2 + (xx - 30) ** 2 > 100)
    for b in (blob, band, ring, blob | band | ring, np.ones((7, 9), bool), np.zeros((5, 5), bool)):
        got = bwmorph_thin(b)
        assert np.array_equal(got, skimage_thin(b))
    assert bwmorph_thin(band).sum() < band.sum() / 4  # it does thin


# --------------------------------------------------------------------------- matching vs brute force


def _brute(pred: np.ndarray, gt: np.ndarray, max_dist: float, outlier_cost: float) -> tuple[int, float]:
    """Matched pairs and cost of the dense version of match.cc's graph, solved by
    ``linear_sum_assignment``: every pixel can take *any* outlier node of its own map and any
    two outlier nodes can pair, all at ``oc``; pairs farther than r are forbidden (a large
    finite cost). Returns (matched pairs, match.cc cost = distances + oc per unmatched pixel)."""
    r = match_radius(pred.shape, max_dist)
    oc = outlier_cost * r
    py, px = np.nonzero(pred)
    gy, gx = np.nonzero(gt)
    n1, n2 = py.size, gy.size
    big = 1e9
    d2 = (py[:, None] - gy[None, :]) ** 2 + (px[:, None] - gx[None, :]) ** 2
    real = np.where(d2 <= math.floor(r * r), np.sqrt(d2), big)
    cost = np.full((n1 + n2, n2 + n1), oc)  # rows: pred, gt outliers; cols: gt, pred outliers
    cost[:n1, :n2] = real
    rows, cols = linear_sum_assignment(cost)
    pairs = (rows < n1) & (cols < n2)
    assert (cost[rows, cols] < big).all()
    m = int(pairs.sum())
    return m, float(real[rows[pairs], cols[pairs]].sum() + oc * (n1 + n2 - 2 * m))


@pytest.mark.parametrize("seed", range(6))
def test_exact_matching_equals_dense_brute_force(seed):
    # random sparse maps 12x12..24x24 at a radius of ~2.37 px; also a low outlier cost, where
    # leaving pixels out competes with long matches
    rng = np.random.default_rng(seed)
    for _ in range(25):
        h, w = rng.integers(12, 25, 2)
        pred = rng.random((h, w)) < rng.uniform(0.02, 0.35)
        gt = rng.random((h, w)) < rng.uniform(0.02, 0.35)
        max_dist = 2.37 / math.hypot(h, w)
        for outlier_cost in (OUTLIER_COST, 1.6):
            mp, mg, cost = correspond_pixels(pred, gt, max_dist, outlier_cost, return_cost=True)
            m, want_cost = _brute(pred, gt, max_dist, outlier_cost)
            assert mp.sum() == mg.sum() == m
            assert cost == pytest.approx(want_cost, abs=1e-4)
            assert not (mp & ~pred).any() and not (mg & ~gt).any()


def test_exact_counts_equal_per_threshold_brute_force():
    # the threshold sweep (component reuse between thresholds) against matching every threshold's
    # thinned map from scratch
    rng = np.random.default_rng(7)
    for _ in range(8):
        h, w = rng.integers(16, 30, 2)
        prob = rng.random((h, w)) ** 2
        gt = rng.random((h, w)) < 0.15
        for thin in (True, False):
            got = exact_counts(prob, gt, tolerance=0.12, thresholds=9, thin=thin)
            lev = levels(prob, 9)
            for k in range(1, 10):
                e = bwmorph_thin(lev >= k) if thin else lev >= k
                m, _ = _brute(e, gt, 0.12, OUTLIER_COST)
                assert got[:, k - 1].tolist() == [m, e.sum(), m, gt.sum()]


def test_the_solver_is_not_fooled_by_a_long_shift():
    # a 300-px line against the same line shifted by 2 px along itself: one-to-one, every pixel can
    # be matched only by shifting all of them (cost 2 each), so the matching decides between 300
    # pairs at 600 px and 298 pairs at 0 px plus 4 outliers at 100 r each. match.cc's objective
    # (sum d - oc m) takes the 300 pairs while 2·300 < 2 oc; a larger gap at a longer line would not.
    pred, gt = np.zeros((16, 512), bool), np.zeros((16, 512), bool)
    pred[8, 10:310] = True
    gt[8, 12:312] = True
    r = match_radius(pred.shape, 0.0075)
    assert 3.8 < r < 3.9  # 100 r = 384 > 300
    mp, mg = correspond_pixels(pred, gt, 0.0075)
    assert mp.sum() == mg.sum() == 300
    # with outlier_cost 2.5 (oc = 9.6 px) dropping the two end pairs is cheaper than shifting
    mp, _ = correspond_pixels(pred, gt, 0.0075, outlier_cost=2.5)
    assert mp.sum() == 298


# --------------------------------------------------------------------------- hand cases


def test_two_predictions_next_to_one_ground_truth_pixel():
    # many-to-one matches both predicted pixels, one-to-one only one of them
    gt, pred = _canvas(), _canvas()
    gt[100, 100] = True
    pred[100, 101] = pred[100, 102] = True
    fast = edge_counts(torch.from_numpy(pred[None]).float(), torch.from_numpy(gt[None]))[0, :, 0].tolist()
    exact = exact_counts(pred.astype(np.float32), gt, thin=False)[:, 0].tolist()
    assert fast == [2, 2, 1, 1]
    assert exact == [1, 2, 1, 1]
    mp, mg = correspond_pixels(pred, gt, 0.011)
    assert mp[100, 101] and not mp[100, 102] and mg[100, 100]  # the nearer one


def test_two_pixel_wide_ground_truth_against_a_one_pixel_line():
    # GT columns 100 and 101, rows 50..149; prediction column 100. Many-to-one: recall 1;
    # one-to-one: each predicted pixel takes one GT pixel, recall 1/2.
    gt, pred = _canvas(), _canvas()
    gt[50:150, 100:102] = True
    pred[50:150, 100] = True
    fast = edge_counts(torch.from_numpy(pred[None]).float(), torch.from_numpy(gt[None]))[0, :, 0].tolist()
    exact = exact_counts(pred.astype(np.float32), gt)[:, 0].tolist()
    assert fast == [100, 100, 200, 200]
    assert exact == [100, 100, 100, 200]


@pytest.mark.parametrize("dy, dx", [(0, 3), (3, 2), (3, 3), (0, 4)])
def test_single_pixels_match_within_the_radius_only(dy, dx):
    gt, pred = _canvas(), _canvas()
    gt[100, 100] = True
    pred[100 + dy, 100 + dx] = True
    hit = int(math.hypot(dy, dx) <= 0.011 * math.hypot(N, N))  # (3, 3) is 4.24 px: outside
    assert exact_counts(pred.astype(np.float32), gt)[:, 0].tolist() == [hit, 1, hit, 1]


def test_perfect_prediction_scores_one():
    gt = torch.zeros(1, N, N)
    gt[0, 40:200, 100] = 1
    gt[0, 220, 20:230] = 1
    m = EdgeMetrics(matching="exact")
    m.update(gt.clone(), {"edge": gt})
    s = m.compute()
    assert s["ods"] == pytest.approx(1.0) and s["ois"] == pytest.approx(1.0)


def test_exact_metric_hand_values():
    # GT: a 2-px band (cols 100-101, rows 50..149); prediction: col 100 at 0.9 (nms off).
    # t <= 0.9: P = 1, R = 100/200 -> F = 2/3; above: nothing. ODS = OIS = 2/3. AP: recalls
    # {0, 0.5} with P(q) = 2q on [0, 0.5]: sum_{i=0..50} 2i/100 / 100 = 0.255.
    # Fast mode: R = 1, F = 1, AP = sum_{i=0..100} i/100 / 100 = 0.505.
    gt = torch.zeros(1, N, N)
    gt[0, 50:150, 100:102] = 1
    pred = torch.zeros(1, N, N)
    pred[0, 50:150, 100] = 0.9
    exact, fast = EdgeMetrics(nms=False, matching="exact"), EdgeMetrics(nms=False)
    for m in (exact, fast):
        m.update(pred, {"edge": gt})
    e, f = exact.compute(), fast.compute()
    assert e["ods"] == pytest.approx(2 / 3) and e["ois"] == pytest.approx(2 / 3)
    assert (e["ods_precision"], e["ods_recall"]) == pytest.approx((1.0, 0.5))
    assert e["ap"] == pytest.approx(0.255, rel=1e-12)
    assert f["ods"] == pytest.approx(1.0) and f["ap"] == pytest.approx(0.505, rel=1e-12)


def test_correspond_pixels_cost_and_edge_cases():
    gt, pred = _canvas(), _canvas()
    gt[10, 10] = gt[200, 200] = True
    pred[10, 12] = pred[100, 100] = True
    r = 0.011 * math.hypot(N, N)
    mp, mg, cost = correspond_pixels(pred, gt, 0.011, return_cost=True)
    assert mp.sum() == 1 and mg[10, 10] and not mg[200, 200]
    assert cost == pytest.approx(2.0 + 2 * OUTLIER_COST * r)  # one pair at 2 px, two pixels left out
    empty = _canvas()
    for a, b in ((empty, gt), (pred, empty), (empty, empty)):
        mp, mg, cost = correspond_pixels(a, b, return_cost=True)
        assert not mp.any() and not mg.any()
    # radius 0: only coincident pixels match
    mp, mg = correspond_pixels(pred | gt, gt, 0.0)
    assert np.array_equal(mg, gt) and mp.sum() == 2
    with pytest.raises(ValueError, match="outlier_cost"):
        correspond_pixels(pred, gt, outlier_cost=1.0)
    with pytest.raises(ValueError):
        correspond_pixels(pred, gt[:10])


def test_levels_are_edge_counts_thresholds():
    # exact mode predicts the same pixels as fast mode before thinning
    rng = np.random.default_rng(3)
    prob = rng.random((2, 40, 52)).astype(np.float32) ** 3
    gt = rng.random((2, 40, 52)) < 0.05
    fast = edge_counts(torch.from_numpy(prob), torch.from_numpy(gt), 0.05, 19).numpy()
    exact = exact_counts_batch(prob, gt, 0.05, 19, thin=False)
    assert np.array_equal(exact[:, 1], fast[:, 1]) and np.array_equal(exact[:, 3], fast[:, 3])
    assert (exact[:, 0] <= fast[:, 0]).all() and (exact[:, 2] <= fast[:, 2]).all()
    prob[0, 0, :4] = [0.5, 0.49, 0.99, 1.0]
    assert levels(prob[0, 0, :4], 99).tolist() == [50, 49, 99, 99]


# --------------------------------------------------------------------------- the metric


def _batch(seed: int, b: int = 3, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Blurred label boundaries, partly missed, with noise (as benchmarks/bench_ods.py)."""
    gen = torch.Generator().manual_seed(seed)
    label = (torch.rand(b, 1, 4, 4, generator=gen) * 3).floor()
    label = torch.nn.functional.interpolate(label, size=(size, size), mode="nearest")[:, 0]
    edge = torch.zeros(b, size, size)
    edge[:, :, :-1] += (label[:, :, :-1] != label[:, :, 1:]).float()
    edge[:, :-1, :] += (label[:, :-1, :] != label[:, 1:, :]).float()
    edge = (edge > 0).float()
    blur = torch.nn.functional.avg_pool2d(edge[:, None], 5, 1, 2)[:, 0]
    prob = (blur / blur.amax((1, 2), keepdim=True) * (0.4 + 0.6 * torch.rand(b, 1, 1, generator=gen))
            + 0.15 * torch.rand(b, size, size, generator=gen)).clamp(0, 1)
    return prob, edge


def _segments(seed: int, b: int = 3, size: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight 1-px segments that never touch (so thinning leaves every threshold's map as it is):
    ground truth, and a prediction that copies some of them, shifts some by a pixel, doubles some
    by a parallel line 2 px away (two predictions near one ground-truth pixel), misses some and
    adds false ones, with confidences in (0.1, 1)."""
    gen = torch.Generator().manual_seed(seed)
    gt = torch.zeros(b, size, size)
    pred = torch.zeros(b, size, size)
    for i in range(b):
        for row in range(6, size - 6, 12):  # horizontal segments on rows 6, 18, ...
            x0 = int(torch.randint(2, size // 2, (1,), generator=gen))
            x1 = x0 + int(torch.randint(8, size // 2 - 4, (1,), generator=gen))
            gt[i, row, x0:x1] = 1
            kind = int(torch.randint(0, 5, (1,), generator=gen))
            conf = float(0.1 + 0.9 * torch.rand(1, generator=gen))
            if kind == 0:
                pred[i, row, x0:x1] = conf  # copied
            elif kind == 1:
                pred[i, row + 1, x0 + 2:x1 + 2] = conf  # shifted
            elif kind == 2:
                pred[i, row, x0:x1] = conf  # doubled
                pred[i, row + 2, x0:x1] = 0.5 * conf
            elif kind == 3:
                pred[i, row - 4, x0:x1] = conf  # too far: a false line and a miss
            # kind 4: missed
    return pred, gt


def test_exact_mode_scores_at_most_the_fast_modes():
    # where per-threshold thinning leaves the maps as they are (checked: the predicted counts
    # agree), both modes see the same binary maps and one-to-one matching accepts fewer pairs,
    # so precision and recall drop at every threshold, and ODS with them; OIS and AP are not
    # monotone in the curve in general, but drop here too
    pred, gt = _segments(0)
    fast = EdgeMetrics(nms=False)
    fast.update(pred, {"edge": gt})
    exact = EdgeMetrics(nms=False, matching="exact")
    exact.update(pred, {"edge": gt})
    fc, ec = fast._counts[0], exact._counts[0]
    assert torch.equal(ec[:, 1], fc[:, 1]) and torch.equal(ec[:, 3], fc[:, 3])
    assert (ec[:, 0] <= fc[:, 0]).all() and (ec[:, 2] <= fc[:, 2]).all() and (ec[:, 0] < fc[:, 0]).any()
    f, e = fast.compute(), exact.compute()
    assert e["ods"] < f["ods"] and e["ois"] <= f["ois"] and e["ap"] <= f["ap"]
    assert set(e) == set(EdgeMetrics.names)
    assert ec.dtype == torch.int64 and ec.shape == (3, 4, 99)
    assert len(exact.curve()["precision"]) == 99


def test_exact_mode_on_noisy_maps_runs_through_nms():
    prob, edge = _batch(0)
    exact = EdgeMetrics(thresholds=19, matching="exact")
    exact.update(prob, {"edge": edge})
    fast = EdgeMetrics(thresholds=19)
    fast.update(prob, {"edge": edge})
    # NMS leaves noise clusters that the per-threshold thinning reduces: fewer predicted pixels
    assert (exact._counts[0][:, 1] <= fast._counts[0][:, 1]).all()
    assert 0 < exact.compute()["ods"] < fast.compute()["ods"]


def test_exact_mode_batch_composition_and_workers():
    prob, edge = _batch(1, b=4)
    whole, split = EdgeMetrics(matching="exact", workers=2), EdgeMetrics(matching="exact")
    whole.update(prob, {"edge": edge})
    for i in range(4):
        split.update(prob[i:i + 1], {"edge": edge[i:i + 1]})
    assert torch.equal(torch.cat(whole._counts), torch.cat(split._counts))
    assert whole.compute() == split.compute()


def test_matching_is_validated():
    with pytest.raises(ValueError, match="'fast', 'exact'"):
        EdgeMetrics(matching="bsds")
    with pytest.raises(ValueError, match="workers"):
        EdgeMetrics(matching="exact", workers=-1)
    assert EdgeMetrics(matching="auto").matching == "auto"  # the trainer resolves it; counts as fast
    with pytest.raises(ValueError, match="outlier_cost"):
        exact_counts(np.zeros((4, 4)), np.zeros((4, 4), bool), outlier_cost=0.5)


# --------------------------------------------------------------------------- pyedgeeval


def _pyedgeeval_counts(prob: np.ndarray, gt: np.ndarray, tolerance: float, k: int) -> np.ndarray:
    """BSDS's CSA matching (pyedgeeval's compiled match.cc) on our thinned maps, 4×K."""
    from pyEdgeEval._lib import correspond_pixels as csa

    out = np.zeros((4, k), np.int64)
    lev = levels(prob, k)
    for t in range(1, k + 1):
        e = bwmorph_thin(lev >= t)
        if e.any() and gt.any():
            m1, m2, _, _ = csa(e.astype(np.float64), gt.astype(np.float64), max_dist=tolerance)
            out[:, t - 1] = [(m1 > 0).sum(), e.sum(), (m2 > 0).sum(), gt.sum()]
        else:
            out[:, t - 1] = [0, e.sum(), 0, gt.sum()]
    return out


def test_against_pyedgeeval():
    pytest.importorskip("pyEdgeEval", reason="pyedgeeval (BSDS's match.cc, compiled) is not installed")
    prob, edge = _batch(2, b=3, size=96)
    from mtlbench.metrics.edge import thin

    nms = thin(prob).numpy()
    gt = edge.numpy() > 0.5
    k = 33
    bsds = np.stack([_pyedgeeval_counts(nms[i], gt[i], 0.011, k) for i in range(3)])
    exact = exact_counts_batch(nms, gt, 0.011, k)
    # the most pixels any one-to-one matching pairs (a huge outlier cost: cardinality first)
    most = exact_counts_batch(nms, gt, 0.011, k, outlier_cost=1e7)
    assert np.array_equal(bsds[:, 1], exact[:, 1]) and np.array_equal(bsds[:, 3], exact[:, 3])
    assert (bsds[:, 0] <= exact[:, 0]).all() and (exact[:, 0] <= most[:, 0]).all()
    scores = [ods_ois_ap(torch.from_numpy(c)) for c in (bsds, exact, most)]
    for key in ("ods", "ois", "ap"):
        assert scores[0][key] <= scores[1][key] + 1e-12 <= scores[2][key] + 2e-12
