"""Streamed metrics: ``update`` per batch, ``compute`` once per split.

All accumulators pool over every valid pixel of the split (the multi-task convention), in
float64 so that a full split sums without drift.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Metric:
    """Interface of a streamed metric."""

    names: tuple[str, ...] = ()  # the keys ``compute`` returns
    higher_is_better: frozenset[str] = frozenset()  # those of them where larger is better

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError


class DepthMetrics(Metric):
    """MAE, RMSE, AbsRel and δ<1.25^k in metres over valid pixels, plus the seed's MAE/RMSE on
    depth normalised to [0, 1] by ``max_depth``.

    Predictions are clipped to ``[min_depth, max_depth]``; pixels count where
    ``min_depth < gt <= max_depth``.

    Args:
        max_depth: the normalisation depth and upper validity bound, metres.
        min_depth: lower validity bound, metres.

    Example:
        >>> m = DepthMetrics(max_depth=10.0)
        >>> m.update(torch.tensor([[[2.0, 4.0]]]), {"depth": torch.tensor([[[2.0, 2.0]]])})
        >>> m.compute()["mae"]
        1.0
    """

    names = ("mae", "rmse", "abs_rel", "delta1", "delta2", "delta3", "mae_norm", "rmse_norm")
    higher_is_better = frozenset({"delta1", "delta2", "delta3"})

    def __init__(self, max_depth: float = 10.0, min_depth: float = 1e-3) -> None:
        self.max_depth = max_depth
        self.min_depth = min_depth
        self.reset()

    def reset(self) -> None:
        self._sums = torch.zeros(7, dtype=torch.float64)

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        gt = batch["depth"].float()
        valid = (gt > self.min_depth) & (gt <= self.max_depth)
        p = pred.double().clamp(self.min_depth, self.max_depth)[valid]
        g = gt.double()[valid]
        if g.numel() == 0:
            return
        err = p - g
        ratio = torch.maximum(p / g, g / p)
        sums = torch.stack([
            torch.tensor(float(g.numel()), dtype=torch.float64, device=g.device),
            err.abs().sum(),
            err.pow(2).sum(),
            (err.abs() / g).sum(),
            (ratio < 1.25).sum().double(),
            (ratio < 1.25**2).sum().double(),
            (ratio < 1.25**3).sum().double(),
        ])
        self._sums += sums.cpu()

    def compute(self) -> dict[str, float]:
        n, abs_sum, sq_sum, rel_sum, d1, d2, d3 = self._sums.tolist()
        if n == 0:
            return {}
        mae, rmse = abs_sum / n, (sq_sum / n) ** 0.5
        return {
            "mae": mae,
            "rmse": rmse,
            "abs_rel": rel_sum / n,
            "delta1": d1 / n,
            "delta2": d2 / n,
            "delta3": d3 / n,
            "mae_norm": mae / self.max_depth,
            "rmse_norm": rmse / self.max_depth,
        }


class SegMetrics(Metric):
    """Pixel accuracy, mean class accuracy and mIoU from a streamed confusion matrix.

    mIoU averages over the classes that occur in the ground truth or the prediction of the
    split (a class absent from both has no defined IoU).

    Args:
        num_classes: number of classes; labels outside ``[0, num_classes)`` (255) are ignored.

    Example:
        >>> m = SegMetrics(2)
        >>> m.update(torch.tensor([[0, 1, 1]]), {"seg": torch.tensor([[0, 1, 0]])})
        >>> round(m.compute()["miou"], 4)
        0.5
    """

    names = ("pixel_acc", "mean_acc", "miou")
    higher_is_better = frozenset(names)

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        gt = batch["seg"].long().reshape(-1)
        pred = pred.long().reshape(-1)
        keep = (gt >= 0) & (gt < self.num_classes)
        idx = gt[keep] * self.num_classes + pred[keep].clamp(0, self.num_classes - 1)
        counts = torch.bincount(idx, minlength=self.num_classes**2)
        self.confusion += counts.reshape(self.num_classes, self.num_classes).cpu()

    def compute(self) -> dict[str, float]:
        cm = self.confusion.double()
        total = cm.sum()
        if total == 0:
            return {}
        tp = cm.diag()
        gt_count, pred_count = cm.sum(1), cm.sum(0)
        union = gt_count + pred_count - tp
        present = union > 0
        iou = tp[present] / union[present]
        has_gt = gt_count > 0
        return {
            "pixel_acc": (tp.sum() / total).item(),
            "mean_acc": (tp[has_gt] / gt_count[has_gt]).mean().item(),
            "miou": iou.mean().item(),
        }


class EdgeMetrics(Metric):
    """Pixel-wise precision, recall and F-score of edges at one fixed threshold.

    No matching tolerance: a predicted edge pixel counts only where the target is an edge.
    (Tolerance-based ODS/OIS is a separate evaluation.)

    Args:
        threshold: probability above which a pixel is an edge.

    Example:
        >>> m = EdgeMetrics(0.5)
        >>> m.update(torch.tensor([[0.9, 0.9, 0.1]]), {"edge": torch.tensor([[1.0, 0.0, 1.0]])})
        >>> m.compute()["fscore"]
        0.5
    """

    names = ("precision", "recall", "fscore")
    higher_is_better = frozenset(names)

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._counts = torch.zeros(3, dtype=torch.float64)

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        p = pred > self.threshold
        g = batch["edge"] > 0.5
        counts = torch.stack([(p & g).sum(), (p & ~g).sum(), (~p & g).sum()])
        self._counts += counts.double().cpu()

    def compute(self) -> dict[str, float]:
        tp, fp, fn = self._counts.tolist()
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "fscore": f}
