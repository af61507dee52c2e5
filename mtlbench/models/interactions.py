"""Task interactions: modules through which one task's features refine another's.

The interface is one class: ``__init__(channels, **options)`` and
``forward(target, source) -> Tensor`` returning the refined ``target`` features (same shape),
residual included. Register a factory under a name and a multi-task model can use it::

    @INTERACTIONS.register("my_guidance")
    def my_guidance(channels: int, **options) -> nn.Module:
        return MyGuidance(channels, **options)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.options import Option, at_least
from mtlbench.registry import INTERACTIONS


class GuidedAttention(nn.Module):
    """The guided attention of *Beneath the Surface* (§5.2): softmax(Q·Kᵀ/√d)·V with the query from the target
    task's features and key and value from the guiding task's, added back as a residual.

    Keys and values are average-pooled to at most ``grid``×``grid`` positions, so the attention
    matrix is (H·W)×grid² rather than (H·W)², bounded whatever the input size.

    Args:
        channels: feature channels of both tasks.
        dim: query/key width d.
        heads: attention heads (``dim`` is split between them).
        grid: side of the pooled key/value grid.
    """

    def __init__(self, channels: int, dim: int = 64, heads: int = 1, grid: int = 16) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads, self.dim, self.grid = heads, dim, grid
        self.query = nn.Conv2d(channels, dim, 1)
        self.key = nn.Conv2d(channels, dim, 1)
        self.value = nn.Conv2d(channels, dim, 1)
        self.out = nn.Conv2d(dim, channels, 1)

    def _pool(self, source: Tensor) -> Tensor:
        if source.shape[-2] > self.grid or source.shape[-1] > self.grid:
            source = F.adaptive_avg_pool2d(source, (min(self.grid, source.shape[-2]),
                                                    min(self.grid, source.shape[-1])))
        return source

    def _heads(self, conv: nn.Module, x: Tensor) -> Tensor:
        """B×heads×positions×(dim/heads)."""
        return conv(x).reshape(x.shape[0], self.heads, self.dim // self.heads, -1).transpose(-1, -2)

    def attend(self, target: Tensor, source: Tensor) -> Tensor:
        """The attention output alone (before the residual), B×C×H×W."""
        b, _, h, w = target.shape
        source = self._pool(source)
        q, k, v = self._heads(self.query, target), self._heads(self.key, source), self._heads(self.value, source)
        out = F.scaled_dot_product_attention(q, k, v)  # B×heads×HW×dh
        return self.out(out.transpose(-1, -2).reshape(b, self.dim, h, w))

    def attention_maps(self, target: Tensor, source: Tensor) -> Tensor:
        """The attention weights, B×heads×(target positions)×(pooled source positions); read by
        :func:`mtlbench.models.base.capture_attention` for figures."""
        source = self._pool(source)
        q, k = self._heads(self.query, target), self._heads(self.key, source)
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.dim // self.heads), -1)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        return target + self.attend(target, source)


@INTERACTIONS.register("guided_attention", options={
    "dim": Option(64, "query/key width d (split between the heads)", at_least(1)),
    "heads": Option(1, "attention heads", at_least(1)),
    "grid": Option(16, "side of the pooled key/value grid", at_least(1)),
})
def guided_attention(channels: int, dim: int = 64, heads: int = 1, grid: int = 16) -> nn.Module:
    """The paper §5.2: query from the target task, key/value from the guide, residual; pooled K/V grid."""
    return GuidedAttention(channels, dim, heads, grid)
