"""Example mtlbench plugin: guided attention with a learned gate on the residual."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtlbench.api import GuidedAttention

MTLBENCH_API = "1"


class GatedGuidedAttention(GuidedAttention):
    """target + g ⊙ attend(target, source), with g = σ(conv1×1([target, attended])) per pixel.

    The gate's bias starts at −2 (g ≈ 0.12) so the guide is let in gradually.
    """

    def __init__(self, channels: int, dim: int = 64, heads: int = 1, grid: int = 16) -> None:
        super().__init__(channels, dim, heads, grid)
        self.gate = nn.Conv2d(2 * channels, 1, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, -2.0)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        attended = self.attend(target, source)
        gate = torch.sigmoid(self.gate(torch.cat([target, attended], dim=1)))
        return target + gate * attended


def register() -> None:
    """Entry point of the ``mtlbench.plugins`` group."""
    from mtlbench.api import INTERACTIONS, Option, at_least

    @INTERACTIONS.register("gated_attention", options={
        "dim": Option(64, "query/key width d (split between the heads)", at_least(1)),
        "heads": Option(1, "attention heads", at_least(1)),
        "grid": Option(16, "side of the pooled key/value grid", at_least(1)),
    })
    def gated_attention(channels: int, dim: int = 64, heads: int = 1, grid: int = 16) -> nn.Module:
        """Guided attention with a learned sigmoid gate on the residual (example plugin)."""
        return GatedGuidedAttention(channels, dim, heads, grid)
