"""Segmentation metrics: hand confusion matrices, bad predicted labels, and an independent numpy
derivation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlbench.errors import BadPredictionError
from mtlbench.metrics import SegMetrics


def _approx(expected: dict[str, float], rel: float = 1e-12) -> dict:
    return {k: pytest.approx(v, rel=rel, abs=1e-12) for k, v in expected.items()}


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
# fwIoU = 4/10 · 1/2 + 6/10 · 3/7 = 1/5 + 9/35 = 16/35 (classes 2, 3 have no ground-truth pixels)
SEG_EXPECTED = {"pixel_acc": 0.6, "mean_acc": 0.625, "miou": 13 / 42, "fwiou": 16 / 35,
                "iou/0": 1 / 2, "iou/1": 3 / 7, "iou/2": 0.0}


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
    freq = gt_n / cm.sum()
    out = {"pixel_acc": tp.sum() / cm.sum(), "mean_acc": float(np.mean(accs)), "miou": float(np.mean(ious)),
           "fwiou": float(sum(freq[c] * tp[c] / (gt_n[c] + pred_n[c] - tp[c]) for c in range(num_classes) if gt_n[c]))}
    out.update({f"iou/{c}": tp[c] / (gt_n[c] + pred_n[c] - tp[c]) for c in range(num_classes) if gt_n[c] + pred_n[c]})
    return out


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


@pytest.mark.parametrize("bad", [255, 4, -1, 65535])
def test_predicted_labels_outside_the_classes_raise_and_stay_out_of_the_matrix(bad):
    # they used to be clamped into [0, C − 1]: a 255 counted as the last class
    pred = SEG_PRED.clone()
    pred[0, 0, 0] = bad  # at a labelled pixel (gt 0)
    pred[0, 1, 2] = bad  # at a labelled pixel (gt 1)
    pred[0, 2, 2] = bad  # at an unlabelled pixel (gt 255): not looked at
    m = SegMetrics(4)
    m.update(pred[:, :2], {"seg": SEG_GT[:, :2]})
    m.update(pred[:, 2:], {"seg": SEG_GT[:, 2:]})
    with pytest.raises(BadPredictionError, match=r"seg predictions hold 2 labels outside \[0, 4\) at labelled pixels: "
                                         r"a model's predict\(\) must return class ids"):
        m.compute()
    # the two pixels are in no cell; the other eight are where they were
    good = SegMetrics(4)
    good.update(SEG_PRED, {"seg": SEG_GT})
    expected = good.confusion.clone()
    expected[0, 0] -= 1
    expected[1, 1] -= 1
    assert torch.equal(m.confusion, expected)
    m.reset()
    m.update(SEG_PRED, {"seg": SEG_GT})
    assert m.compute() == _approx(SEG_EXPECTED, rel=1e-12)


def test_bad_label_count_is_summed_over_processes():
    class Pair:  # the other process's state added to this one's, in ``summed`` order
        active = True

        def __init__(self, other: SegMetrics) -> None:
            self.state = [getattr(other, n) for n in other.summed]

        def sum_(self, t: torch.Tensor) -> torch.Tensor:
            return t + self.state.pop(0)

    first, second = SegMetrics(4), SegMetrics(4)
    first.update(SEG_PRED, {"seg": SEG_GT})
    second.update(torch.full_like(SEG_PRED, 7), {"seg": SEG_GT})
    first.reduce(Pair(second), torch.device("cpu"))
    with pytest.raises(ValueError, match="hold 10 labels"):
        first.compute()


def test_per_class_keys_use_class_names():
    m = SegMetrics(4, ("wall", "floor", "bed", "chair"))
    m.update(SEG_PRED, {"seg": SEG_GT})
    got = m.compute()
    assert got["iou/wall"] == pytest.approx(1 / 2) and got["iou/floor"] == pytest.approx(3 / 7)
    assert "iou/chair" not in got  # absent from ground truth and prediction: no IoU
    assert set(got) <= set(m.names)
    # names of the wrong length fall back to ids rather than mislabel
    assert "iou/3" in SegMetrics(4, ("a", "b")).names
