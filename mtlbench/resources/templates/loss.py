"""my_plugin: an mtlbench loss for depth (``--task depth``, ``[loss.names] depth = "my_plugin"``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.api import LOSSES, DatasetInfo, Option

MTLBENCH_API = "2"


class MyPlugin(nn.Module):
    """Smooth L1 (Huber) on depth normalised by the maximum depth, over valid pixels."""

    def __init__(self, max_depth: float, beta: float) -> None:
        super().__init__()
        self.max_depth, self.beta = max_depth, beta

    def forward(self, prediction: Tensor, batch: dict[str, Tensor]) -> Tensor:
        target = batch["depth"]
        valid = (target > 0) & (target <= self.max_depth)
        if not valid.any():
            return prediction.sum() * 0  # no valid pixel: zero, not NaN
        loss = F.smooth_l1_loss(prediction.float(), target / self.max_depth, beta=self.beta, reduction="none")
        return loss[valid].mean()


def my_plugin(info: DatasetInfo, beta: float = 0.05) -> nn.Module:
    """my_plugin: Huber loss on normalised depth (mtlbench plugin template)."""
    return MyPlugin(info.max_depth, beta)


def register() -> None:
    """The ``mtlbench.plugins`` entry point."""
    LOSSES.register("my_plugin", task="depth", options={"beta": Option(0.05, "where L1 turns quadratic")})(my_plugin)
