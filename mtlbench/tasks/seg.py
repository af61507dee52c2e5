"""Semantic segmentation: one channel per class, the ignore label left out."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from mtlbench.config import EvalConfig
from mtlbench.data.images import write_gray_png
from mtlbench.metrics import Metric, SegMetrics
from mtlbench.registry import TASKS
from mtlbench.tasks.base import DatasetInfo, Task, voc_palette


@cache
def nyu40_names() -> tuple[str, ...]:
    """The 40 NYUv2 class names (Gupta et al.), in 0-based id order."""
    text = resources.files("mtlbench.resources").joinpath("nyuv2_names40.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@dataclass(frozen=True)
class SegTask(Task):
    class_names: tuple[str, ...] = ()

    def predict(self, output: Tensor) -> Tensor:
        return output.argmax(1)

    def metrics(self, options: EvalConfig | None = None) -> Metric:
        return SegMetrics(self.out_channels, self.class_names)

    def colorize(self, prediction: Tensor) -> Tensor:
        # class c takes VOC colour c+1 (0 is reserved for "unlabelled", drawn black)
        palette = torch.cat([voc_palette(256)[1:], torch.zeros(1, 3, dtype=torch.uint8)])
        return palette[prediction.long().clamp(0, 255)]

    def save(self, prediction: Tensor, stem: Path) -> Path:
        """Class ids as a grey PNG ``{stem}_seg.png``."""
        return write_gray_png(prediction.cpu(), stem.with_name(f"{stem.name}_seg.png"))


@TASKS.register("seg")
def seg(info: DatasetInfo) -> Task:
    """Semantic segmentation: one channel per class (NYU-40 by default), 255 ignored."""
    names = info.class_names or (nyu40_names() if info.num_classes == 40 else ())
    return SegTask("seg", info.num_classes, "seg", "cross_entropy", head="classes", class_names=names)
