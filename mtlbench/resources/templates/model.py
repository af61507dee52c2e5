"""my_plugin: an mtlbench model (``--model my_plugin``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.api import MODELS, Backbone, MultiTaskModel, Task

MTLBENCH_API = "2"


class MyPlugin(MultiTaskModel):
    """Backbone → per task, the four scales upsampled to stride 4, summed, a 3×3 conv and a 1×1 head."""

    def __init__(self, tasks: Mapping[str, Task], backbone: Backbone) -> None:
        super().__init__(list(tasks))
        self.backbone = backbone
        c = backbone.width
        self.heads = nn.ModuleDict({t: nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                                     nn.Conv2d(c, task.out_channels, 1))
                                    for t, task in tasks.items()})

    def encode(self, x: Tensor) -> list[Tensor]:
        return self.backbone(x)

    def decode(self, shared: Sequence[Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
        fused = shared[0]
        for f in shared[1:]:
            fused = fused + F.interpolate(f, size=shared[0].shape[-2:], mode="bilinear", align_corners=False)
        return {t: F.interpolate(head(fused), size=size, mode="bilinear", align_corners=False)
                for t, head in self.heads.items()}


def my_plugin(tasks: Mapping[str, Task], backbone: Backbone) -> MyPlugin:
    """my_plugin: summed multi-scale features, a head per task (mtlbench plugin template)."""
    return MyPlugin(tasks, backbone)


def register() -> None:
    """The ``mtlbench.plugins`` entry point."""
    MODELS.register("my_plugin", tasks=("depth", "seg", "edge", "normals"))(my_plugin)
