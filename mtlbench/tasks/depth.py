"""Monocular depth: one channel, normalised to [0, 1] by the dataset's maximum depth; metrics in metres."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mtlbench.config import EvalConfig
from mtlbench.data.images import write_npy
from mtlbench.errors import MtlbenchError
from mtlbench.metrics import DepthMetrics, Metric
from mtlbench.registry import TASKS
from mtlbench.tasks.base import DatasetInfo, Task, ramp


@dataclass(frozen=True)
class DepthTask(Task):
    max_depth: float = 10.0

    def predict(self, output: Tensor) -> Tensor:
        """Normalised head output → metres (B×1×H×W)."""
        return output.float().clamp(0.0, 1.0) * self.max_depth

    def metrics(self, options: EvalConfig | None = None) -> Metric:
        o = options or EvalConfig()
        cap = o.max_depth or self.max_depth
        if o.min_depth >= cap:
            raise MtlbenchError(f"eval.min_depth {o.min_depth} must be below the evaluation cap {cap} m "
                                f"(eval.max_depth, else the dataset's depth range)")
        return DepthMetrics(self.max_depth, min_depth=o.min_depth, cap=o.max_depth or self.max_depth,
                            eigen_crop=o.eigen_crop, boundaries=o.boundaries)

    def colorize(self, prediction: Tensor, near: float = 0.0, far: float | None = None) -> Tensor:
        """Depth in metres as colours, ``near`` brightest, ``far`` (default ``max_depth``) darkest;
        figures pass one range to ground truth and prediction so that their colours compare."""
        far = self.max_depth if far is None else far
        # near is bright, as in the paper's figures; invalid (0) is black
        img = ramp(1.0 - (prediction.float() - near) / max(far - near, 1e-6))
        return torch.where((prediction > 0)[..., None], img, torch.zeros_like(img))

    def colorize_pair(self, target: Tensor | None, prediction: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """Both in one colour range: the ground truth's valid range, else the prediction's
        (indoor scenes span a few metres of the 10 m scale)."""
        span: dict[str, float] = {}
        for d in (target, prediction):
            if d is not None and bool((d > 0).any()):
                v = d[d > 0].float()
                span = {"near": float(v.min()), "far": float(v.max())}
                break
        return (None if target is None else self.colorize(target, **span),
                None if prediction is None else self.colorize(prediction, **span))

    def save(self, prediction: Tensor, stem: Path) -> Path:
        """Metres as float32 ``{stem}_depth.npy``."""
        metres = prediction.squeeze(0).cpu().numpy().astype(np.float32)
        return write_npy(metres, stem.with_name(f"{stem.name}_depth.npy"))


@TASKS.register("depth")
def depth(info: DatasetInfo) -> Task:
    """Monocular depth: 1 channel, normalised to [0, 1] by the maximum depth; metrics in metres."""
    return DepthTask("depth", 1, "depth", "structured_depth", max_depth=info.max_depth)
