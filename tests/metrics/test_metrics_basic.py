"""Streamed metrics, checked against hand values and independent numpy code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlbench.metrics import DepthMetrics, EdgeMetrics, SegMetrics

# ---------------------------------------------------------------------------------------------
# DepthMetrics
# ---------------------------------------------------------------------------------------------

# max_depth 10, min_depth 0.5; 1×1×2×4. Pixel by pixel (pred clipped to [0.5, 10]):
#   gt 2, pred 2.2        err 0.2  sq 0.04   rel 0.1     ratio 1.1  → δ1 δ2 δ3
#   gt 2, pred 3.0        err 1.0  sq 1      rel 0.5     ratio 1.5  → δ2 δ3   (1.25 < 1.5 < 1.5625)
#   gt 2, pred 3.8        err 1.8  sq 3.24   rel 0.9     ratio 1.9  → δ3      (1.5625 < 1.9 < 1.953125)
#   gt 4, pred 1.0        err 3.0  sq 9      rel 0.75    ratio 4    → none    (gt/pred)
#   gt 5, pred 20 → 10    err 5.0  sq 25     rel 1.0     ratio 2    → none
#   gt 0, pred 7          invalid (no measurement)
#   gt 12, pred 3         invalid (beyond max_depth)
#   gt 8, pred -1 → 0.5   err 7.5  sq 56.25  rel 0.9375  ratio 16   → none
# n = 6; Σerr = 18.5; Σsq = 94.53; Σrel = 4.1875; δ counts 1, 2, 3.
DEPTH_GT = torch.tensor([[[[2.0, 2.0, 2.0, 4.0], [5.0, 0.0, 12.0, 8.0]]]])
DEPTH_PRED = torch.tensor([[[[2.2, 3.0, 3.8, 1.0], [20.0, 7.0, 3.0, -1.0]]]])
DEPTH_EXPECTED = {
    "mae": 18.5 / 6,
    "rmse": math.sqrt(94.53 / 6),
    "abs_rel": 4.1875 / 6,
    "delta1": 1 / 6,
    "delta2": 2 / 6,
    "delta3": 3 / 6,
    "mae_norm": 18.5 / 6 / 10,
    "rmse_norm": math.sqrt(94.53 / 6) / 10,
}


def _approx(expected: dict[str, float], rel: float = 1e-6) -> dict:
    return {k: pytest.approx(v, rel=rel, abs=1e-9) for k, v in expected.items()}


def test_depth_metrics_hand_case():
    m = DepthMetrics(max_depth=10.0, min_depth=0.5)
    m.update(DEPTH_PRED, {"depth": DEPTH_GT})
    assert m.compute() == _approx(DEPTH_EXPECTED)


def test_depth_metrics_normalised_errors_divide_by_max_depth():
    # Same scene in a unit where max_depth is 20 and every length doubles: metric errors double,
    # the normalised ones and the ratios (AbsRel, δ) stay the same.
    m = DepthMetrics(max_depth=20.0, min_depth=1.0)
    m.update(2 * DEPTH_PRED, {"depth": 2 * DEPTH_GT})
    got = m.compute()
    for k in ("mae", "rmse"):
        assert got[k] == pytest.approx(2 * DEPTH_EXPECTED[k], rel=1e-6)
    for k in ("abs_rel", "delta1", "delta2", "delta3", "mae_norm", "rmse_norm"):
        assert got[k] == pytest.approx(DEPTH_EXPECTED[k], rel=1e-6)
    assert got["mae_norm"] == pytest.approx(got["mae"] / 20.0, rel=1e-12)


def test_depth_metrics_default_min_depth_clips_negative_prediction():
    # defaults: max_depth 10, min_depth 1e-3. gt [1, 2], pred [-5, 2]:
    # pred -5 → 1e-3, err 0.999; second pixel exact → MAE 0.999 / 2, δ1 = 1/2
    m = DepthMetrics()
    m.update(torch.tensor([[[-5.0, 2.0]]]), {"depth": torch.tensor([[[1.0, 2.0]]])})
    got = m.compute()
    assert got["mae"] == pytest.approx(0.999 / 2, rel=1e-5)
    assert got["delta1"] == pytest.approx(0.5)
    assert got["abs_rel"] == pytest.approx(0.999 / 2, rel=1e-5)


def _depth_reference_np(pred: np.ndarray, gt: np.ndarray, max_depth: float, min_depth: float) -> dict:
    pred = pred.astype(np.float64).ravel()
    gt = gt.astype(np.float64).ravel()
    valid = (gt > min_depth) & (gt <= max_depth)
    p = np.minimum(np.maximum(pred[valid], min_depth), max_depth)
    g = gt[valid]
    err = p - g
    ratio = np.maximum(p / g, g / p)
    mae = np.mean(np.abs(err))
    rmse = np.sqrt(np.mean(err**2))
    return {
        "mae": mae, "rmse": rmse, "abs_rel": np.mean(np.abs(err) / g),
        "delta1": np.mean(ratio < 1.25), "delta2": np.mean(ratio < 1.25**2), "delta3": np.mean(ratio < 1.25**3),
        "mae_norm": mae / max_depth, "rmse_norm": rmse / max_depth,
    }


def test_depth_metrics_streaming_equals_concatenation_and_numpy():
    gen = torch.Generator().manual_seed(0)
    gt_a = torch.rand(2, 1, 4, 5, generator=gen) * 14.0  # part of it beyond max_depth 10
    gt_b = torch.rand(3, 1, 4, 5, generator=gen) * 14.0
    gt_a[0, 0, :2] = 0.0  # invalid: no measurement
    pred_a = gt_a * (0.6 + 0.8 * torch.rand(gt_a.shape, generator=gen)) - 0.5
    pred_b = gt_b * (0.6 + 0.8 * torch.rand(gt_b.shape, generator=gen)) + 0.5

    streamed = DepthMetrics(10.0)
    streamed.update(pred_a, {"depth": gt_a})
    streamed.update(pred_b, {"depth": gt_b})
    once = DepthMetrics(10.0)
    once.update(torch.cat([pred_a, pred_b]), {"depth": torch.cat([gt_a, gt_b])})

    got_s, got_o = streamed.compute(), once.compute()
    # per-batch sums are float32 (pooled in float64), so the split differs in the 7th digit
    assert got_s == _approx(got_o, rel=1e-6)
    ref = _depth_reference_np(torch.cat([pred_a, pred_b]).numpy(), torch.cat([gt_a, gt_b]).numpy(), 10.0, 1e-3)
    assert got_s == _approx(ref, rel=1e-5)

    # reset forgets everything streamed so far
    streamed.reset()
    streamed.update(DEPTH_PRED, {"depth": DEPTH_GT})
    fresh = DepthMetrics(10.0)
    fresh.update(DEPTH_PRED, {"depth": DEPTH_GT})
    assert streamed.compute() == _approx(fresh.compute(), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# SegMetrics
# ---------------------------------------------------------------------------------------------

# num_classes 4; 12 pixels (1×3×4). Class 3 occurs in neither gt nor prediction (it is predicted
# only on an ignored 255 pixel); class 2 occurs only in the prediction.
SEG_GT = torch.tensor([[[0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 255, 255]]])
SEG_PRED = torch.tensor([[[0, 0, 0, 1], [1, 1, 1, 2], [0, 0, 3, 2]]])
# confusion over the 10 labelled pixels (rows gt, cols pred):
#   gt 0 (4 px): pred 0 ×3, pred 1 ×1
#   gt 1 (6 px): pred 1 ×3, pred 2 ×1, pred 0 ×2
# tp = [3, 3, 0, 0]; gt counts [4, 6, 0, 0]; pred counts [5, 4, 1, 0]
# pixel_acc = 6/10
# mean_acc over classes with gt (0, 1): (3/4 + 3/6) / 2 = 0.625
# IoU: c0 3/(4+5-3) = 1/2, c1 3/(6+4-3) = 3/7, c2 0/(0+1-0) = 0, c3 undefined → excluded
# mIoU = (1/2 + 3/7 + 0) / 3 = 13/42
SEG_EXPECTED = {"pixel_acc": 0.6, "mean_acc": 0.625, "miou": 13 / 42}


def test_seg_metrics_hand_confusion():
    m = SegMetrics(4)
    m.update(SEG_PRED, {"seg": SEG_GT})
    assert m.compute() == _approx(SEG_EXPECTED, rel=1e-12)


def test_seg_metrics_streaming_two_updates_equals_one():
    m = SegMetrics(4)
    m.update(SEG_PRED[:, :2], {"seg": SEG_GT[:, :2]})
    m.update(SEG_PRED[:, 2:], {"seg": SEG_GT[:, 2:]})
    assert m.compute() == _approx(SEG_EXPECTED, rel=1e-12)


def _seg_reference_np(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> dict:
    pred, gt = pred.ravel(), gt.ravel()
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for g, p in zip(gt, pred):
        if 0 <= g < num_classes:
            cm[g, p] += 1
    tp = np.diag(cm).astype(np.float64)
    gt_n, pred_n = cm.sum(axis=1), cm.sum(axis=0)
    ious = [tp[c] / (gt_n[c] + pred_n[c] - tp[c]) for c in range(num_classes) if gt_n[c] + pred_n[c] > 0]
    accs = [tp[c] / gt_n[c] for c in range(num_classes) if gt_n[c] > 0]
    return {"pixel_acc": tp.sum() / cm.sum(), "mean_acc": float(np.mean(accs)), "miou": float(np.mean(ious))}


@pytest.mark.parametrize("absent", [None, 3])
def test_seg_metrics_random_against_numpy_confusion(absent):
    rng = np.random.default_rng(7)
    num_classes = 5
    gt = rng.integers(0, num_classes, size=(2, 17, 19))
    pred = rng.integers(0, num_classes, size=(2, 17, 19))
    gt[rng.random(gt.shape) < 0.15] = 255
    if absent is not None:  # a class seen in neither gt nor prediction: excluded from the means
        gt[gt == absent] = 255
        pred[pred == absent] = (absent + 1) % num_classes
    ref = _seg_reference_np(pred, gt, num_classes)
    m = SegMetrics(num_classes)
    m.update(torch.from_numpy(pred[:1]), {"seg": torch.from_numpy(gt[:1])})
    m.update(torch.from_numpy(pred[1:]), {"seg": torch.from_numpy(gt[1:])})
    assert m.compute() == _approx(ref, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# EdgeMetrics
# ---------------------------------------------------------------------------------------------


def test_edge_metrics_hand_precision_recall_f():
    # threshold 0.5 (strict >): predicted edges at 0.9, 0.6, 0.7 (0.5 is not above it)
    #   prob  0.9 0.6 0.4 0.2 0.7 0.5
    #   edge   1   0   1   0   1   1
    # tp 2 (0.9, 0.7), fp 1 (0.6), fn 2 (0.4, 0.5)
    # P = 2/3, R = 2/4, F = 2·(2/3)(1/2) / (2/3 + 1/2) = 4/7
    prob = torch.tensor([[[[0.9, 0.6, 0.4], [0.2, 0.7, 0.5]]]])
    edge = torch.tensor([[[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]]])
    m = EdgeMetrics(0.5)
    m.update(prob, {"edge": edge})
    assert m.compute() == _approx({"precision": 2 / 3, "recall": 0.5, "fscore": 4 / 7}, rel=1e-12)
    # streamed in two halves: same counts
    m2 = EdgeMetrics(0.5)
    m2.update(prob[..., :1, :], {"edge": edge[..., :1, :]})
    m2.update(prob[..., 1:, :], {"edge": edge[..., 1:, :]})
    assert m2.compute() == _approx({"precision": 2 / 3, "recall": 0.5, "fscore": 4 / 7}, rel=1e-12)
    # threshold 0.3 adds 0.4 and 0.5 as (true) edges: tp 4, fp 1, fn 0
    # → P = 4/5, R = 1, F = 2·(4/5)·1 / (9/5) = 8/9
    m3 = EdgeMetrics(0.3)
    m3.update(prob, {"edge": edge})
    assert m3.compute() == _approx({"precision": 0.8, "recall": 1.0, "fscore": 8 / 9}, rel=1e-12)


def test_edge_metrics_no_predicted_edges_is_zero_without_division_error():
    # no prediction above threshold: tp = fp = 0 → precision 0, recall 0/2 = 0, F 0
    m = EdgeMetrics(0.5)
    m.update(torch.tensor([[[0.1, 0.2, 0.3]]]), {"edge": torch.tensor([[[1.0, 0.0, 1.0]]])})
    assert m.compute() == {"precision": 0.0, "recall": 0.0, "fscore": 0.0}
    # nothing at all (no target edges, no predicted edges, or no update): zeros as well
    m = EdgeMetrics(0.5)
    assert m.compute() == {"precision": 0.0, "recall": 0.0, "fscore": 0.0}
    m.update(torch.tensor([[[0.1, 0.2]]]), {"edge": torch.tensor([[[0.0, 0.0]]])})
    assert m.compute() == {"precision": 0.0, "recall": 0.0, "fscore": 0.0}
