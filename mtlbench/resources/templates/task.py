"""my_plugin: an mtlbench task (written by ``mtlbench plugin new my_plugin --kind task``).

The example marks the pixels nearer than ``near`` metres: its target is derived after
augmentation from the frame's depth, so it trains on any dataset with depth (synthrooms, NYUv2).
A task whose dataset stores its target declares that target's kind in the dataset's
``DatasetInfo.targets`` instead and needs no ``derive``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.api import LOSSES, TASKS, DatasetInfo, Metric, MetricRecord, Option, Task, register_metric

MTLBENCH_API = "2"


class MyPluginMetrics(Metric):
    """Pixel accuracy and IoU of the thresholded prediction over pixels with valid depth, pooled."""

    task = "my_plugin"
    names = ("iou", "accuracy")
    summed = ("inter", "union", "right", "pixels")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.inter, self.union, self.right, self.pixels = (torch.zeros((), dtype=torch.float64) for _ in range(4))

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        target = batch["my_plugin"]
        valid = batch["depth"] > 0
        p, t = (pred > 0.5)[valid], (target > 0.5)[valid]
        device = p.device
        self.inter = self.inter.to(device) + (p & t).sum()
        self.union = self.union.to(device) + (p | t).sum()
        self.right = self.right.to(device) + (p == t).sum()
        self.pixels = self.pixels.to(device) + p.numel()

    def compute(self) -> dict[str, float]:
        return {"iou": float(self.inter / self.union.clamp_min(1)),
                "accuracy": float(self.right / self.pixels.clamp_min(1))}


@dataclass(frozen=True)
class MyPlugin(Task):
    near: float = 2.0

    def missing(self, info: DatasetInfo) -> str | None:
        return None if "depth" in info.targets else "its frames carry no depth to draw the near pixels from"

    def derive(self, batch: dict[str, Tensor]) -> None:
        if "depth" in batch:
            depth = batch["depth"]
            batch[self.target_key] = ((depth > 0) & (depth < self.near)).float()

    def predict(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output.float())

    def metrics(self, options: Any = None) -> Metric:
        return MyPluginMetrics()

    def colorize(self, prediction: Tensor) -> Tensor:
        return (prediction.float().clamp(0, 1) * 255).round().to(torch.uint8)[..., None].expand(
            *prediction.shape, 3)


class MyPluginLoss(nn.Module):
    """Binary cross-entropy over pixels with valid depth."""

    def forward(self, prediction: Tensor, batch: dict[str, Tensor]) -> Tensor:
        valid = (batch["depth"] > 0).float()
        loss = F.binary_cross_entropy_with_logits(prediction.float(), batch["my_plugin"].float(), weight=valid,
                                                  reduction="sum")
        return loss / valid.sum().clamp_min(1.0)


def my_plugin(info: DatasetInfo, near: float) -> Task:
    """my_plugin: the pixels nearer than `near` metres."""
    return MyPlugin("my_plugin", 1, "my_plugin", "my_plugin_bce", key_metric="iou", near=near)


def my_plugin_bce(info: DatasetInfo) -> nn.Module:
    """Binary cross-entropy for my_plugin over pixels with valid depth."""
    return MyPluginLoss()


def register() -> None:
    """The ``mtlbench.plugins`` entry point."""
    TASKS.register("my_plugin", options={"near": Option(2.0, "metres: nearer pixels are marked", lambda v: None
                                                          if v > 0 else f"must be positive, got {v}")})(my_plugin)
    LOSSES.register("my_plugin_bce", task="my_plugin")(my_plugin_bce)
    register_metric(MetricRecord("iou", "my_plugin", "IoU", "IoU", True, percent=True, key=True, in_delta_all=True,
                                 order=0))
    register_metric(MetricRecord("accuracy", "my_plugin", "pixel acc.", "acc.", True, percent=True, order=1))
