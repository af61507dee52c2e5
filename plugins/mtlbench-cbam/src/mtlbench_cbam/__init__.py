"""CBAM-style cross-task gates for mtlbench: the guide decides which channels and where.

Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018, refines a feature map with a
channel gate (an MLP of its average- and max-pooled descriptors) and then a spatial gate (a 7×7
conv of its channel-wise average and max). Here both gates are computed from the guiding task's
features and applied to a projection of them, which is added to the target:
target + W_o(M_s(s) ⊙ M_c(s) ⊙ W_v s), W_o zero at the start (the identity). What differs from
the paper: the gates come from another task's features, and the result is a residual message
rather than a rescaling of the same map.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtlbench.api import INTERACTIONS, Option, at_least

MTLBENCH_API = "1"


class CBAMGuidance(nn.Module):
    def __init__(self, channels: int, reduction: int = 8, kernel: int = 7) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2)
        self.value = nn.Conv2d(channels, channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        c = torch.sigmoid(self.channel(source.mean(dim=(2, 3))) + self.channel(source.amax(dim=(2, 3))))
        gated = source * c[..., None, None]
        s = torch.sigmoid(self.spatial(torch.cat([gated.mean(1, keepdim=True), gated.amax(1, keepdim=True)], 1)))
        return target + self.out(self.value(source) * c[..., None, None] * s)


def cbam(channels: int, reduction: int = 8, kernel: int = 7) -> nn.Module:
    """CBAM (Woo et al., ECCV 2018) gates from the guide: channel then spatial, a residual message."""
    if kernel % 2 == 0:
        raise ValueError(f"kernel {kernel} must be odd, so that the gate keeps the map's size")
    return CBAMGuidance(channels, reduction, kernel)


def register() -> None:
    """The ``mtlbench.plugins`` entry point: registers ``cbam`` (importing the module does not)."""
    options = {"reduction": Option(8, "channel reduction of the channel gate's MLP", at_least(1)),
               "kernel": Option(7, "side of the spatial gate's convolution (odd)", at_least(1))}
    INTERACTIONS.register("cbam", options=options, identity_at_init=True)(cbam)
