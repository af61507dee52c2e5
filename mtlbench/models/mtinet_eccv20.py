"""MTI-Net (Vandenhende, Georgoulis, Van Gool, ECCV 2020) on any four-scale backbone.

Scales are numbered finest first (0: stride 4 … 3: stride 32), as the backbone returns them.
Per scale, coarse to fine:

1. **Initial task predictions.** Per task, two residual basic blocks turn the backbone features
   of the scale — concatenated, below the coarsest scale, with the task's features propagated
   from the next coarser scale by the FPM — into task features ``F_t``; a 1×1 conv on ``F_t``
   gives the initial prediction of the task at that scale (deep supervision).
2. **Feature propagation (FPM)**, from scale k+1 to scale k: a shared basic block over the
   concatenated features of all tasks; per target task a 1×1 conv and a softmax over the tasks
   gives per-pixel weights (one per task, summing to 1), the task-weighted sum of the features
   goes through the target's squeeze-and-excitation and is added to the target's features; the
   result, upsampled, enters step 1 at scale k.
3. **Multi-modal distillation** (PAD-Net's attention-guided message passing):
   ``D_t = F_t + Σ_{s≠t} σ(W_a F_s) ⊙ (W_b F_s)`` with 3×3 convs per (source, target) pair.

Finally, per task, the distilled features of all four scales are upsampled to the finest scale,
concatenated, and an HRNet-style head (1×1 conv-BN-ReLU, 1×1 conv) makes the prediction, resized
bilinearly to the input. In training mode the output also holds ``"aux"``: four dicts, finest
scale first, with every task's initial prediction at that scale.

With one task there is nothing to distil from and the FPM softmax has a single entry (weight 1),
so both reduce to their residual paths (the FPM keeps its squeeze-and-excitation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.errors import MtlbenchError
from mtlbench.models.backbones import NUM_SCALES, Backbone, conv_bn_relu
from mtlbench.models.base import AUX, MultiTaskModel, Outputs
from mtlbench.options import Option, at_least
from mtlbench.registry import MODELS
from mtlbench.tasks import Task


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class BasicBlock(nn.Module):
    """ResNet basic block (3×3 conv-BN-ReLU, 3×3 conv-BN, identity or 1×1 projection, ReLU)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class SqueezeExcitation(nn.Module):
    """Channel gating: global average pool, FC-ReLU-FC-sigmoid, rescale (Hu et al. 2018)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


class InitialPrediction(nn.Module):
    """Per task: two basic blocks → task features; a 1×1 conv → the initial prediction."""

    def __init__(self, tasks: Mapping[str, Task], cin: int, channels: int) -> None:
        super().__init__()
        self.refine = nn.ModuleDict({t: nn.Sequential(BasicBlock(cin, channels), BasicBlock(channels, channels))
                                     for t in tasks})
        self.predict = nn.ModuleDict({t: nn.Conv2d(channels, task.out_channels, 1) for t, task in tasks.items()})

    def forward(self, feats: Tensor, propagated: Mapping[str, Tensor] | None
                ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        features, preds = {}, {}
        for t, block in self.refine.items():
            x = feats if propagated is None else torch.cat([feats, _resize(propagated[t], feats.shape[-2:])], 1)
            features[t] = block(x)
            preds[t] = self.predict[t](features[t])
        return features, preds


class FeaturePropagation(nn.Module):
    """MTI-Net's feature propagation module at one scale (its output goes to the next finer one).

    A shared basic block over the concatenation of all tasks' features; per target task, a 1×1
    conv and a softmax over the tasks give per-pixel task weights; the weighted sum of the tasks'
    features passes through the target's squeeze-and-excitation and is added to the target's
    own features.

    :meth:`attention_maps` gives the masks, B×N(target)×N(source)×H×W: per target task, the
    weights of the N tasks (in ``task_names`` order) at every pixel.
    """

    def __init__(self, task_names: Sequence[str], channels: int, se_reduction: int = 4) -> None:
        super().__init__()
        self.task_names = list(task_names)
        n = len(self.task_names)
        self.shared = BasicBlock(n * channels, channels)
        self.mask_logits = nn.ModuleDict({t: nn.Conv2d(channels, n, 1) for t in self.task_names})
        self.se = nn.ModuleDict({t: SqueezeExcitation(channels, se_reduction) for t in self.task_names})

    def masks(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per target task, the B×N×H×W softmax weights of the tasks."""
        shared = self.shared(torch.cat([features[t] for t in self.task_names], 1))
        return {t: torch.softmax(conv(shared), dim=1) for t, conv in self.mask_logits.items()}

    def attention_maps(self, features: Mapping[str, Tensor]) -> Tensor:
        """The masks of every target task, stacked: B×N×N×H×W (target, source)."""
        return torch.stack(list(self.masks(features).values()), 1)

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        masks = self.masks(features)
        stacked = torch.stack([features[t] for t in self.task_names], 1)  # B×N×C×H×W
        out = {}
        for t in self.task_names:
            mixed = (masks[t].unsqueeze(2) * stacked).sum(1)
            out[t] = features[t] + self.se[t](mixed)
        return out


class AttentionMessage(nn.Module):
    """PAD-Net attention-guided message from one task to another: σ(W_a F) ⊙ (W_b F)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attention = nn.Conv2d(channels, channels, 3, padding=1)
        self.message = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, source: Tensor) -> Tensor:
        return torch.sigmoid(self.attention(source)) * self.message(source)


class MultiModalDistillation(nn.Module):
    """``D_t = F_t + Σ_{s≠t} σ(W_a^{s→t} F_s) ⊙ (W_b^{s→t} F_s)`` for every task t."""

    def __init__(self, task_names: Sequence[str], channels: int) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.messages = nn.ModuleDict({f"{s}_to_{t}": AttentionMessage(channels)
                                       for t in self.task_names for s in self.task_names if s != t})

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for t in self.task_names:
            y = features[t]
            for s in self.task_names:
                if s != t:
                    y = y + self.messages[f"{s}_to_{t}"](features[s])
            out[t] = y
        return out


class MTINetECCV20(MultiTaskModel):
    """MTI-Net: initial predictions, FPM and distillation at four scales, per-task aggregation.

    Args:
        tasks: the tasks to predict, by name.
        backbone: a :class:`Backbone` with four scales of equal width (finest first).
        se_reduction: channel reduction of the FPM's squeeze-and-excitation.
    """

    def __init__(self, tasks: Mapping[str, Task], backbone: Backbone, se_reduction: int = 4) -> None:
        if not tasks:
            raise MtlbenchError("mtinet_eccv20 needs at least one task: pass one or more of depth, seg, edge, normals")
        if list(backbone.strides) != [4, 8, 16, 32]:
            raise MtlbenchError(f"backbone {backbone.name} has strides {backbone.strides}; "
                                f"mtinet_eccv20 needs its last four scales at strides 4, 8, 16, 32")
        if not isinstance(se_reduction, int) or isinstance(se_reduction, bool) or se_reduction < 1:
            raise MtlbenchError(f"mtinet_eccv20: se_reduction must be a positive integer, got {se_reduction!r}")
        super().__init__(list(tasks))
        self.backbone = backbone
        c = backbone.width
        coarsest = NUM_SCALES - 1
        # initial[k] works at scale k; below the coarsest it also takes the FPM output from k+1
        self.initial = nn.ModuleList(InitialPrediction(tasks, c if k == coarsest else 2 * c, c)
                                     for k in range(NUM_SCALES))
        # fpm[k] propagates scale k+1 → k (k = 0, 1, 2)
        self.fpm = nn.ModuleList(FeaturePropagation(self.task_names, c, se_reduction)
                                 for _ in range(NUM_SCALES - 1))
        self.distill = nn.ModuleList(MultiModalDistillation(self.task_names, c) for _ in range(NUM_SCALES))
        self.heads = nn.ModuleDict({t: nn.Sequential(conv_bn_relu(NUM_SCALES * c, c, k=1),
                                                     nn.Conv2d(c, task.out_channels, 1))
                                    for t, task in tasks.items()})
        self.notes = [f"mtinet_eccv20: {len(self.task_names)} task(s), "
                                 f"deep supervision at {NUM_SCALES} scales"]

    def encode(self, x: Tensor) -> list[Tensor]:
        return self.backbone(x)

    def decode(self, feats: Sequence[Tensor], size: tuple[int, int]) -> Outputs:
        distilled: list[dict[str, Tensor]] = [{} for _ in range(NUM_SCALES)]
        initial: list[dict[str, Tensor]] = [{} for _ in range(NUM_SCALES)]
        propagated: dict[str, Tensor] | None = None
        for k in reversed(range(NUM_SCALES)):  # coarse to fine
            task_feats, initial[k] = self.initial[k](feats[k], propagated)
            if k > 0:
                propagated = self.fpm[k - 1](task_feats)
            distilled[k] = self.distill[k](task_feats)
        fine = feats[0].shape[-2:]
        out: Outputs = {}
        for t in self.task_names:
            agg = torch.cat([_resize(distilled[k][t], fine) for k in range(NUM_SCALES)], 1)
            out[t] = _resize(self.heads[t](agg), size)
        if self.training:
            out[AUX] = initial
        return out


@MODELS.register("mtinet_eccv20", tasks=("depth", "seg", "edge", "normals"), options={
    "se_reduction": Option(4, "channel reduction of the FPM's squeeze-and-excitation", at_least(1)),
})
def mtinet_eccv20(tasks: Mapping[str, Task], backbone: Backbone, se_reduction: int) -> MTINetECCV20:
    """MTI-Net (ECCV 2020): multi-scale initial predictions, FPM, distillation, deep supervision."""
    return MTINetECCV20(tasks, backbone, se_reduction)
