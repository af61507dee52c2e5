"""The seed's MTI-Net-style model and the hard-parameter-sharing baseline.

Both share one composition: backbone → per-task features at stride 16 → interactions → per-task
decoders. ``hps`` has no interactions; ``mtinet`` refines depth features with
segmentation→depth and edge→depth guidance (seed §5.2). Given one task, either model is that
task's single-task baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.errors import MtlbenchError
from mtlbench.models.backbones import Backbone, conv_bn_relu
from mtlbench.models.base import MultiTaskModel, Outputs, check_tasks
from mtlbench.options import Option
from mtlbench.registry import INTERACTIONS, MODELS
from mtlbench.tasks import Task


def _cat(*xs: Tensor) -> Tensor:
    return torch.cat(xs, dim=1)


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class SkipDecoder(nn.Module):
    """Depth decoder (seed §5.2.1): bilinear upsampling with skip connections from strides 8 and
    4, head at stride 4, bilinear to the input size."""

    def __init__(self, width: int, out_channels: int) -> None:
        super().__init__()
        self.fuse8 = conv_bn_relu(2 * width, width)
        self.fuse4 = conv_bn_relu(2 * width, width // 2)
        self.head = nn.Conv2d(width // 2, out_channels, 3, padding=1)

    def forward(self, x: Tensor, skips: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        x = self.fuse8(_cat(_up(x, skips[1]), skips[1]))
        x = self.fuse4(_cat(_up(x, skips[0]), skips[0]))
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)


class TransposedDecoder(nn.Module):
    """Segmentation decoder (seed §5.2.1): four stride-2 transposed convolutions from stride 16
    to the input size, halving channels down to width/4."""

    def __init__(self, width: int, out_channels: int, stride: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = width
        for _ in range(stride.bit_length() - 1):
            c_out = max(width // 4, c // 2)
            layers += [nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c = c_out
        self.up = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, out_channels, 1)

    def forward(self, x: Tensor, skips: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        x = self.head(self.up(x))
        return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class LightDecoder(nn.Module):
    """Edge decoder (seed §5.2.1): 1×1 projections of the task features and the stride-4
    backbone features, one 3×3 conv, bilinear to the input size."""

    def __init__(self, width: int, out_channels: int) -> None:
        super().__init__()
        c = width // 4
        self.task_proj = nn.Conv2d(width, c, 1)
        self.skip_proj = nn.Conv2d(width, c, 1)
        self.head = nn.Sequential(conv_bn_relu(2 * c, c), nn.Conv2d(c, out_channels, 1))

    def forward(self, x: Tensor, skips: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        x = self.head(_cat(_up(self.task_proj(x), skips[0]), self.skip_proj(skips[0])))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


# normals, a dense regression like depth, take depth's decoder (PAD-Net and MTI-Net treat the two alike)
DECODERS: dict[str, type[nn.Module]] = {"depth": SkipDecoder, "seg": TransposedDecoder, "edge": LightDecoder,
                                        "normals": SkipDecoder}


class TaskFeatures(nn.Module):
    """Task-specific features at stride 16 from the stride-16 and stride-32 backbone maps."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.block = nn.Sequential(conv_bn_relu(2 * width, width), conv_bn_relu(width, width))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        return self.block(_cat(feats[2], _up(feats[3], feats[2])))


def decoders(tasks: Mapping[str, Task], width: int) -> nn.ModuleDict:
    """The seed's decoder of every task."""
    return nn.ModuleDict({t: DECODERS[t](width, task.out_channels) for t, task in tasks.items()})


class MultiTaskNet(MultiTaskModel):
    """Backbone → task features → interactions → decoders.

    Args:
        tasks: the tasks to predict, by name.
        backbone: a :class:`Backbone` (four scales, equal width).
        guidance: ``(guide, target) → interaction module``; each refines the target's features
            with the guide's, applied in order.
        name: the model's name in messages.
    """

    def __init__(self, tasks: Mapping[str, Task], backbone: Backbone,
                 guidance: Mapping[tuple[str, str], nn.Module] | None = None, name: str = "mtinet") -> None:
        super().__init__(check_tasks(name, tasks, tuple(DECODERS)))
        if backbone.strides[2] != 16:
            raise MtlbenchError(f"backbone {backbone.name} has strides {backbone.strides}; "
                                f"model {name} needs its last four scales at strides 4, 8, 16, 32")
        self.backbone = backbone
        width = backbone.width
        self.features = nn.ModuleDict({t: TaskFeatures(width) for t in tasks})
        self.guidance = nn.ModuleDict({f"{g}_to_{t}": m for (g, t), m in (guidance or {}).items()})
        self.decoders = decoders(tasks, width)

    def encode(self, x: Tensor) -> list[Tensor]:
        return self.backbone(x)

    def decode(self, shared: Sequence[Tensor], size: tuple[int, int]) -> Outputs:
        task_feats = {t: m(shared) for t, m in self.features.items()}
        for key, module in self.guidance.items():  # in the order given
            g, t = key.split("_to_")
            task_feats[t] = module(task_feats[t], task_feats[g])
        return {t: self.decoders[t](task_feats[t], shared[:2], size) for t in self.task_names}


SEED_GUIDANCE = (("seg", "depth"), ("edge", "depth"))


def guidance_report(tasks: Sequence[str], pairs: Sequence[tuple[str, str]] = SEED_GUIDANCE) -> list[str]:
    """One line per guidance pair saying whether it is on, and why not."""
    lines = []
    for g, t in pairs:
        missing = [x for x in (g, t) if x not in tasks]
        state = "on" if not missing else f"off ({' and '.join(missing)} not requested)"
        lines.append(f"{g}→{t} guidance: {state}")
    return lines


def known_interaction(name: str) -> None:
    INTERACTIONS.entry(name)  # an unknown name raises with the close matches


def parse_guidance(edges: Sequence[str]) -> list[tuple[str, str]]:
    """``["seg->depth", …]`` as (guide, target) pairs; an edge that is not two different known
    tasks, or that repeats, is an error naming it."""
    pairs: list[tuple[str, str]] = []
    for edge in edges:
        parts = str(edge).split("->")
        if len(parts) != 2 or any(p.strip() not in DECODERS for p in parts) or parts[0].strip() == parts[1].strip():
            raise MtlbenchError(f"guidance edge {edge!r}: write GUIDE->TARGET with two different tasks of "
                                f"{', '.join(DECODERS)}, e.g. \"seg->depth\"")
        pair = (parts[0].strip(), parts[1].strip())
        if pair in pairs:
            raise MtlbenchError(f"guidance edge {edge!r} is given twice")
        pairs.append(pair)
    return pairs


def _check_guidance(edges: Sequence[str]) -> None:
    parse_guidance(edges)


@MODELS.register("mtinet", tasks=tuple(DECODERS), options={
    "interaction": Option("guided_attention", "guidance module (mtlbench list interactions)", known_interaction),
    "guidance": Option([f"{g}->{t}" for g, t in SEED_GUIDANCE], "guidance edges GUIDE->TARGET, applied in order "
                       "(an edge whose tasks are not both trained is off; [] is no guidance)", _check_guidance),
})
def mtinet(tasks: Mapping[str, Task], backbone: Backbone, interaction: str,
           guidance: Sequence[str] = ("seg->depth", "edge->depth")) -> MultiTaskNet:
    """Seed model: seg→depth and edge→depth guided attention on task features, task decoders."""
    edges = parse_guidance(guidance)
    pairs = [(g, t) for g, t in edges if g in tasks and t in tasks]
    modules = {p: INTERACTIONS.build(interaction, backbone.width) for p in pairs}
    model = MultiTaskNet(tasks, backbone, modules)
    model.notes = [f"{line} [{interaction}]" if line.endswith(": on") else line
                   for line in guidance_report(list(tasks), edges)] or ["guidance: none"]
    return model


@MODELS.register("hps", tasks=tuple(DECODERS))
def hps(tasks: Mapping[str, Task], backbone: Backbone) -> MultiTaskNet:
    """Hard parameter sharing: shared backbone, independent task features and decoders."""
    return MultiTaskNet(tasks, backbone, name="hps")
