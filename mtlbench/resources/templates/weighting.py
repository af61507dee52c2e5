"""my_plugin: an mtlbench loss weighting (``--weighting my_plugin``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mtlbench.api import WEIGHTINGS, LossWeighting, Option

MTLBENCH_API = "2"


class MyPlugin(LossWeighting):
    """Σ_t L_t / (L_t.detach() + ε)^p: each task's loss scaled towards 1 (p = 0 is the plain sum)."""

    def __init__(self, tasks: Sequence[str], power: float = 1.0) -> None:
        super().__init__(tasks)
        self.power = power

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        values = torch.stack([losses[t] for t in self.tasks])
        return (values / (values.detach() + 1e-8) ** self.power).sum()


def my_plugin(tasks: Sequence[str], power: float = 1.0) -> MyPlugin:
    """my_plugin: losses scaled towards one (mtlbench plugin template)."""
    return MyPlugin(tasks, power)


def register() -> None:
    """The ``mtlbench.plugins`` entry point."""
    options = {"power": Option(1.0, "how far each loss is scaled towards 1")}
    meta = {"level": "loss", "paper": "", "implementation": "plugin"}
    WEIGHTINGS.register("my_plugin", options=options, **meta)(my_plugin)
