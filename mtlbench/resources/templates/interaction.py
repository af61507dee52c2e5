"""my_plugin: an mtlbench interaction (a guidance edge's module).

Replace the body of ``MyPlugin.forward``; keep its promise: the target's shape back, the residual
included, the identity at initialisation (``identity_at_init=True`` below; drop it if yours is not).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtlbench.api import INTERACTIONS, Option, at_least

MTLBENCH_API = "2"


class MyPlugin(nn.Module):
    """target + σ(gate([target, source])) ⊙ message(source); the message starts at zero."""

    def __init__(self, channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.gate = nn.Conv2d(2 * channels, channels, 1)
        self.message = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(hidden, channels, 1))
        nn.init.zeros_(self.message[-1].weight)
        nn.init.zeros_(self.message[-1].bias)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        return target + torch.sigmoid(self.gate(torch.cat([target, source], 1))) * self.message(source)


def my_plugin(channels: int, hidden: int = 32) -> nn.Module:
    """my_plugin: a gated message from the guide (mtlbench plugin template)."""
    return MyPlugin(channels, hidden)


def register() -> None:
    """The ``mtlbench.plugins`` entry point."""
    options = {"hidden": Option(32, "width of the message's hidden layer", at_least(1))}
    INTERACTIONS.register("my_plugin", options=options, identity_at_init=True)(my_plugin)
