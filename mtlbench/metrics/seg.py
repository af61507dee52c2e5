"""Segmentation metrics from a confusion matrix streamed over the split.

With ``C[i, j]`` the pixels of ground-truth class i predicted as j, summed over the split:

- ``pixel_acc`` = Σ C[i, i] / Σ C
- ``mean_acc`` = mean over classes present in the ground truth of C[i, i] / Σ_j C[i, j]
- ``iou/<class>`` = C[i, i] / (Σ_j C[i, j] + Σ_j C[j, i] − C[i, i]), for classes present in the
  ground truth or the prediction (absent from both: no IoU, and not averaged)
- ``miou`` = mean of those IoUs
- ``fwiou`` = Σ_i (Σ_j C[i, j] / Σ C) · IoU_i, frequency-weighted IoU

**Bad predictions.** A predicted label outside [0, C) at a labelled pixel is not a class: it means
``predict`` returned something other than class ids (an ignore label such as 255, logits,
probabilities). Such pixels are counted (device-resident, summed over processes), left out of the
confusion matrix, and :meth:`SegMetrics.compute` raises a ``ValueError`` naming how many. (They
used to be clamped silently into the last class.) Predictions at unlabelled pixels are not looked
at.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtlbench.errors import BadPredictionError
from mtlbench.metrics.base import Metric

_SUMMARY = ("pixel_acc", "mean_acc", "miou", "fwiou")


class SegMetrics(Metric):
    """Pixel accuracy, mean class accuracy, mIoU, fwIoU and per-class IoU (module docstring).

    Args:
        num_classes: number of classes; ground-truth labels outside ``[0, num_classes)`` (255,
            65535) are ignored; predicted labels outside it at labelled pixels are an error that
            :meth:`compute` raises (module docstring).
        class_names: names for the per-class keys (``iou/wall``); ``iou/<id>`` when not given.

    Example:
        >>> m = SegMetrics(2)
        >>> m.update(torch.tensor([[0, 1, 1]]), {"seg": torch.tensor([[0, 1, 0]])})
        >>> round(m.compute()["miou"], 4)
        0.5
    """

    task = "seg"
    summed = ("confusion", "_bad")

    def __init__(self, num_classes: int, class_names: tuple[str, ...] | list[str] = ()) -> None:
        self.num_classes = num_classes
        names = list(class_names) if len(class_names) == num_classes else [str(i) for i in range(num_classes)]
        self.class_keys = tuple(f"iou/{n}" for n in names)
        self.names = _SUMMARY + self.class_keys
        self.reset()

    def reset(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        self._bad = torch.zeros((), dtype=torch.int64)  # predicted labels outside [0, C) at labelled pixels

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        c = self.num_classes
        gt = batch["seg"].reshape(-1).long()
        p = pred.reshape(-1).long()
        labelled = (gt >= 0) & (gt < c)
        in_range = (p >= 0) & (p < c)
        # state on the device of the batch, masked rather than indexed: no host sync
        self._bad = self._bad.to(gt.device) + (labelled & ~in_range).sum()
        # pixels left out (ignored label, bad prediction) go to one extra bin that is dropped;
        # index_add_ rather than bincount, which reads its input's maximum back to the host on CUDA
        idx = torch.where(labelled & in_range, torch.add(p, gt, alpha=c), c * c)
        counts = torch.zeros(c * c + 1, dtype=torch.int64, device=gt.device)
        counts.index_add_(0, idx, torch.ones(1, dtype=torch.int64, device=gt.device).expand(idx.numel()))
        self.confusion = self.confusion.to(gt.device) + counts[: c * c].view(c, c)

    def compute(self) -> dict[str, float]:
        bad = int(self._bad)
        if bad:
            raise BadPredictionError(
                f"seg predictions hold {bad} labels outside [0, {self.num_classes}) at labelled pixels: a model's "
                f"predict() must return class ids (the argmax over its {self.num_classes} class channels), not "
                f"logits, probabilities or an ignore label such as 255")
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
