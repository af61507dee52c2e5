"""PAD-Net's multi-modal distillation as one guidance edge for mtlbench.

Xu et al., "PAD-Net: Multi-Tasks Guided Prediction-and-Distillation Network for Simultaneous
Depth Estimation and Scene Parsing", CVPR 2018, variant C (attention-guided message passing):
F_t ← F_t + σ(W_g ∗ F_t) ⊙ (W_m ∗ F_s), the gate from the receiving task's own features, both W
3×3 convs. In PAD-Net every task sends to every other; here one edge of the task graph is one
such message, so `guidance = ["seg->depth", "edge->depth"]` is PAD-Net's distillation into depth.
The message conv starts at zero (the identity), where PAD-Net initialises it at random.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtlbench.api import INTERACTIONS

MTLBENCH_API = "1"


class AttentionGuidedMessage(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(channels, channels, 3, padding=1)
        self.message = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.message.weight)
        nn.init.zeros_(self.message.bias)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        return target + torch.sigmoid(self.gate(target)) * self.message(source)


def padnet_distillation(channels: int) -> nn.Module:
    """PAD-Net (Xu et al., CVPR 2018) variant C: a message from the guide, gated by the target."""
    return AttentionGuidedMessage(channels)


def register() -> None:
    """The ``mtlbench.plugins`` entry point: registers ``padnet_distillation`` (importing the module does not)."""
    INTERACTIONS.register("padnet_distillation", identity_at_init=True)(padnet_distillation)
