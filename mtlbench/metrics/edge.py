"""Edge metrics."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlbench.metrics.base import Metric


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
