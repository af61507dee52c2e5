"""Loss weightings: how per-task losses become the one loss that is minimised.

A weighting is an ``nn.Module`` called with ``{task: loss}``; its parameters (if any) are
optimised with the model's.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from mtlbench.registry import WEIGHTINGS


class FixedWeighting(nn.Module):
    """Σ_t w_t·L_t with constant weights (1 for tasks not named)."""

    def __init__(self, tasks: list[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(tasks))
        if unknown:
            raise ValueError(f"loss weights given for tasks not trained: {', '.join(unknown)}")
        self.weights = {t: float(weights.get(t, 1.0)) for t in tasks}

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        return sum(self.weights[t] * loss for t, loss in losses.items())  # type: ignore[return-value]


class UncertaintyWeighting(nn.Module):
    """Homoscedastic uncertainty weighting (Kendall et al., CVPR 2018): Σ_t exp(−s_t)·L_t + s_t,
    with one learned log-variance s_t per task, initialised to 0."""

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.log_vars = nn.Parameter(torch.zeros(len(tasks)))

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        total = self.log_vars.new_zeros(())
        for i, t in enumerate(self.tasks):
            total = total + torch.exp(-self.log_vars[i]) * losses[t] + self.log_vars[i]
        return total


@WEIGHTINGS.register("fixed")
def fixed(tasks: list[str], weights: Mapping[str, float] | None = None) -> nn.Module:
    """Weighted sum with constant per-task weights (default 1 each: equal weighting)."""
    return FixedWeighting(tasks, weights)


@WEIGHTINGS.register("uncertainty")
def uncertainty(tasks: list[str], weights: Mapping[str, float] | None = None) -> nn.Module:
    """Learned homoscedastic-uncertainty weights (Kendall et al. 2018)."""
    if weights:
        raise ValueError("the uncertainty weighting learns its weights: drop the fixed loss weights")
    return UncertaintyWeighting(tasks)
