"""Segmentation metrics from a confusion matrix streamed over the split.

With ``C[i, j]`` the pixels of ground-truth class i predicted as j, summed over the split:

- ``pixel_acc`` = Σ C[i, i] / Σ C
- ``mean_acc`` = mean over classes present in the ground truth of C[i, i] / Σ_j C[i, j]
- ``iou/<class>`` = C[i, i] / (Σ_j C[i, j] + Σ_j C[j, i] − C[i, i]), for classes present in the
  ground truth or the prediction (absent from both: no IoU, and not averaged)
- ``miou`` = mean of those IoUs
- ``fwiou`` = Σ_i (Σ_j C[i, j] / Σ C) · IoU_i, frequency-weighted IoU
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtlbench.metrics.base import Metric

_SUMMARY = ("pixel_acc", "mean_acc", "miou", "fwiou")


class SegMetrics(Metric):
    """Pixel accuracy, mean class accuracy, mIoU, fwIoU and per-class IoU (module docstring).

    Args:
        num_classes: number of classes; labels outside ``[0, num_classes)`` (255, 65535) are ignored.
        class_names: names for the per-class keys (``iou/wall``); ``iou/<id>`` when not given.

    Example:
        >>> m = SegMetrics(2)
        >>> m.update(torch.tensor([[0, 1, 1]]), {"seg": torch.tensor([[0, 1, 0]])})
        >>> round(m.compute()["miou"], 4)
        0.5
    """

    task = "seg"
    summed = ("confusion",)

    def __init__(self, num_classes: int, class_names: tuple[str, ...] | list[str] = ()) -> None:
        self.num_classes = num_classes
        names = list(class_names) if len(class_names) == num_classes else [str(i) for i in range(num_classes)]
        self.class_keys = tuple(f"iou/{n}" for n in names)
        self.names = _SUMMARY + self.class_keys
        self.reset()

    def reset(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        c = self.num_classes
        gt = batch["seg"].reshape(-1).long()
        # ignored labels (outside [0, c)) land in an extra row that is dropped: no boolean indexing
        row = torch.where((gt >= 0) & (gt < c), gt, c)
        idx = row * c + pred.reshape(-1).long().clamp(0, c - 1)
        counts = torch.bincount(idx, minlength=(c + 1) * c)[: c * c]
        self.confusion = self.confusion.to(counts.device) + counts.reshape(c, c)

    def compute(self) -> dict[str, float]:
        cm = self.confusion.double()
        total = cm.sum()
        if total == 0:
            return {}
        tp = cm.diag()
        gt_count, pred_count = cm.sum(1), cm.sum(0)
        union = gt_count + pred_count - tp
        present = union > 0
        iou = torch.where(present, tp / union.clamp(min=1), torch.zeros_like(tp))
        has_gt = gt_count > 0
        result = {
            "pixel_acc": (tp.sum() / total).item(),
            "mean_acc": (tp[has_gt] / gt_count[has_gt]).mean().item(),
            "miou": iou[present].mean().item(),
            "fwiou": (gt_count / total * iou).sum().item(),
        }
        result.update({k: iou[i].item() for i, k in enumerate(self.class_keys) if present[i]})
        return result
