"""The built-in weightings: fixed weights, uncertainty (loss level) and PCGrad (gradient level)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchjd.aggregation import PCGrad as _TorchjdPCGrad

from mtlbench.options import Option
from mtlbench.registry import WEIGHTINGS
from mtlbench.weighting.base import GradientWeighting, LossWeighting


def _non_negative_weights(weights: Mapping[str, object]) -> str | None:
    bad = {k: v for k, v in weights.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0}
    return f"weights must be non-negative numbers, got {bad}" if bad else None


class FixedWeighting(LossWeighting):
    """Σ_t w_t·L_t with constant weights (1 for tasks not named)."""

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__(tasks)
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(tasks))
        if unknown:
            raise ValueError(f"weights given for tasks not trained: {', '.join(unknown)}")
        self.weights = {t: float(weights.get(t, 1.0)) for t in tasks}

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        terms = [self.weights[t] * loss for t, loss in losses.items()]
        return sum(terms[1:], terms[0])  # from the first term, not int 0: a Tensor, also to the type checker


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic uncertainty weighting (Kendall et al., CVPR 2018): Σ_t exp(−s_t)·L_t + s_t,
    with one learned log-variance s_t per task, initialised to 0."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__(tasks)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        total = self.log_vars.new_zeros(())
        for i, t in enumerate(self.tasks):
            total = total + torch.exp(-self.log_vars[i]) * losses[t] + self.log_vars[i]
        return total


class PCGrad(GradientWeighting):
    """PCGrad (Yu et al., NeurIPS 2020): each task's gradient is projected off the normal plane of
    every other task's gradient it conflicts with (negative inner product), in random order, and
    the projections are summed. The projection is torchjd's ``PCGrad`` aggregator."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__(tasks)
        self._aggregator = _TorchjdPCGrad()

    def aggregate(self, jacobian: Tensor) -> Tensor:
        return self._aggregator(jacobian)


@WEIGHTINGS.register("fixed", level="loss", paper="", options={
    "weights": Option({}, "constant weight per task, e.g. {depth = 2.0}; tasks not named weigh 1",
                      _non_negative_weights),
})
def fixed(tasks: Sequence[str], weights: Mapping[str, float]) -> nn.Module:
    """Weighted sum with constant per-task weights (default 1 each: equal weighting)."""
    return FixedWeighting(tasks, weights)


@WEIGHTINGS.register("uncertainty", level="loss", paper="Kendall, Gal, Cipolla, CVPR 2018")
def uncertainty(tasks: Sequence[str]) -> nn.Module:
    """Learned homoscedastic-uncertainty weights (Kendall et al. 2018)."""
    return UncertaintyWeighting(tasks)


@WEIGHTINGS.register("pcgrad", level="gradient", paper="Yu et al., NeurIPS 2020")
def pcgrad(tasks: Sequence[str]) -> nn.Module:
    """Projecting conflicting gradients of the shared parameters (Yu et al. 2020; torchjd)."""
    return PCGrad(tasks)
