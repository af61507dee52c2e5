"""Surface normals: unit vectors in the camera frame; metrics are angular errors in degrees."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mtlbench.config import EvalConfig
from mtlbench.metrics import Metric, NormalsMetrics
from mtlbench.registry import TASKS
from mtlbench.tasks.base import DatasetInfo, Task


@dataclass(frozen=True)
class NormalsTask(Task):
    def missing(self, info: DatasetInfo) -> str | None:
        if self.target_key in info.targets:
            return None
        return ("its frames carry no surface normals: use synthrooms, nyud_mt (its normals/ folder) or nyuv2 "
                "prepared with normals")

    def predict(self, output: Tensor) -> Tensor:
        """Raw head output → unit normals (B×3×H×W)."""
        return torch.nn.functional.normalize(output.float(), dim=1, eps=1e-6)

    def metrics(self, options: EvalConfig | None = None) -> Metric:
        return NormalsMetrics()

    def colorize(self, prediction: Tensor) -> Tensor:
        """3×H×W unit normals as (n + 1) / 2 in RGB (x red, y green, z blue); invalid black."""
        n = prediction.float()
        img = ((n + 1) / 2).clamp(0, 1).permute(1, 2, 0).mul(255).round().to(torch.uint8)
        return torch.where((n.abs().sum(0) > 0)[..., None], img, torch.zeros_like(img))


@TASKS.register("normals")
def normals(info: DatasetInfo) -> Task:
    """Surface normals: 3 channels normalised to unit vectors in the camera frame (x right, y up,
    z towards the viewer); metrics are angular errors in degrees."""
    return NormalsTask("normals", 3, "normals", "normals_l1")
