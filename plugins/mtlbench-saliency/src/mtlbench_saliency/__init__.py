"""Salient-object detection for mtlbench: a task the core does not have, added from outside.

- task ``saliency``: one logit channel, trained on a {0, 1} mask (255 = ignore), scored by maxF
  with β² = 0.3 (precision and recall pooled over the split at thresholds 0.05, 0.10, …, 0.95, as
  the ASTMT / MTI-Net / InvPT evaluation does) and the mean absolute error of the probability;
- loss ``saliency_bce``: binary cross-entropy with logits over the labelled pixels;
- dataset ``salrooms``: synthrooms frames whose saliency mask marks the objects in a room (every
  label that is not the room's shell: wall, floor, ceiling, window, door, …).

It imports from ``mtlbench.api`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.api import (
    CONTINUOUS,
    DATASETS,
    LOSSES,
    TASKS,
    DatasetInfo,
    DatasetSplits,
    DenseDataset,
    Metric,
    MetricRecord,
    Target,
    Task,
    register_metric,
)

MTLBENCH_API = "2"

IGNORE = 255
BETA_SQUARED = 0.3
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05 … 0.95

# NYU-40 ids (0-based) of the room's shell: wall, floor, window, door, floor mat, ceiling, blinds,
# curtain (the rest are objects in the room, the salient part)
SHELL = (0, 1, 7, 8, 19, 21, 12, 15)

SALIENCY_TARGET = Target(CONTINUOUS)


class SaliencyMetrics(Metric):
    """maxF (β² = 0.3) over fixed thresholds, pooled over the split, and MAE of the probability."""

    task = "saliency"
    names = ("maxf", "mae", "maxf_threshold")
    summed = ("tp", "predicted", "actual", "abs_error", "pixels")

    def __init__(self, thresholds: tuple[float, ...] = THRESHOLDS, beta_squared: float = BETA_SQUARED) -> None:
        self.thresholds = torch.tensor(thresholds, dtype=torch.float64)
        self.beta_squared = beta_squared
        self.reset()

    def reset(self) -> None:
        n = len(self.thresholds)
        self.tp, self.predicted, self.actual = (torch.zeros(n, dtype=torch.float64) for _ in range(3))
        self.abs_error = torch.zeros((), dtype=torch.float64)
        self.pixels = torch.zeros((), dtype=torch.float64)

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        target = batch["saliency"].float()
        valid = target != IGNORE
        p, t = pred.float()[valid].double(), target[valid].double()
        device = p.device
        self.tp, self.predicted, self.actual = (x.to(device) for x in (self.tp, self.predicted, self.actual))
        above = p[None] > self.thresholds.to(device)[:, None]
        positive = t > 0.5
        self.tp += (above & positive).sum(1)
        self.predicted += above.sum(1)
        self.actual += positive.sum()
        self.abs_error = self.abs_error.to(device) + (p - t).abs().sum()
        self.pixels = self.pixels.to(device) + t.numel()

    def compute(self) -> dict[str, float]:
        precision = self.tp / self.predicted.clamp_min(1)
        recall = self.tp / self.actual.clamp_min(1)
        b2 = self.beta_squared
        f = (1 + b2) * precision * recall / (b2 * precision + recall).clamp_min(1e-12)
        best = int(f.argmax())
        return {"maxf": float(f[best]), "mae": float(self.abs_error / self.pixels.clamp_min(1)),
                "maxf_threshold": float(self.thresholds[best])}


@dataclass(frozen=True)
class SaliencyTask(Task):
    def predict(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output.float())

    def metrics(self, options: Any = None) -> Metric:
        return SaliencyMetrics()

    def colorize(self, prediction: Tensor) -> Tensor:
        """Salient white on black; ignored pixels grey."""
        x = prediction.float()
        img = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        img = torch.where(x == IGNORE, torch.full_like(img, 128), img)
        return img[..., None].expand(*x.shape, 3)

    def save(self, prediction: Tensor, stem: Path) -> Path:
        import numpy as np
        from PIL import Image

        path = stem.with_name(f"{stem.name}_saliency.png")
        Image.fromarray((prediction[0].cpu().clamp(0, 1) * 255).round().byte().numpy().astype(np.uint8)).save(path)
        return path


class SaliencyBCE(nn.Module):
    def forward(self, prediction: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        target = batch["saliency"].float()
        valid = (target != IGNORE).float()
        loss = F.binary_cross_entropy_with_logits(prediction.float(), target.clamp(0, 1), weight=valid,
                                                  reduction="sum")
        return loss / valid.sum().clamp_min(1.0)


def saliency(info: DatasetInfo) -> Task:
    """Salient-object detection: 1 logit channel, maxF (β² = 0.3)."""
    return SaliencyTask("saliency", 1, "saliency", "saliency_bce", key_metric="maxf")


def saliency_bce(info: DatasetInfo) -> nn.Module:
    """Binary cross-entropy with logits over the labelled pixels of the saliency mask."""
    return SaliencyBCE()


def salient_mask(seg: Tensor, ignore_index: int) -> Tensor:
    """Objects (labels outside the room's shell) as 1, the shell as 0, unlabelled pixels ignored."""
    shell = torch.isin(seg.long(), torch.tensor(SHELL))
    mask = (~shell).float()
    return torch.where(seg.long() == ignore_index, torch.full_like(mask, IGNORE), mask)


def salrooms(root: str, size: int, progress: Callable[[int, int], None] | None = None,
             **options: Any) -> DatasetSplits:
    """synthrooms frames with a saliency mask: the objects in each room."""
    rooms = DATASETS.build("synthrooms", root, size, progress, **options)
    info = DatasetInfo(rooms.info.num_classes, rooms.info.max_depth, rooms.info.class_names,
                       rooms.info.ignore_index, {**rooms.info.targets, "saliency": SALIENCY_TARGET})

    def with_masks(split: DenseDataset) -> DenseDataset:
        arrays = split.arrays
        masks = salient_mask(arrays.targets["seg"], info.ignore_index)
        return DenseDataset(type(arrays)(arrays.image, arrays.index, {**arrays.targets, "saliency": masks}), info)

    return DatasetSplits(with_masks(rooms.train), with_masks(rooms.val), with_masks(rooms.test), info=info,
                         source=f"salrooms: {rooms.source}")


def register() -> None:
    """The ``mtlbench.plugins`` entry point."""
    TASKS.register("saliency")(saliency)
    LOSSES.register("saliency_bce", task="saliency")(saliency_bce)
    DATASETS.register("salrooms", options=dict(DATASETS.entry("synthrooms").options))(salrooms)
    for record in (
        MetricRecord("maxf", "saliency", "maxF (β²=0.3)", "maxF", True, percent=True, key=True, in_delta_all=True,
                     order=0),
        MetricRecord("mae", "saliency", "MAE", "MAE", False, order=1),
        MetricRecord("maxf_threshold", "saliency", "maxF threshold", "maxF thr.", None, order=2),
    ):
        register_metric(record)
