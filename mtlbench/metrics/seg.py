"""Segmentation metrics from a streamed confusion matrix."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlbench.metrics.base import Metric


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
