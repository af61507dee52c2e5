"""Depth metrics in metres."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlbench.metrics.base import Metric


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
