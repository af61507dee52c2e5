"""The MTI-Net-style model of *Beneath the Surface* and the hard-parameter-sharing baseline.

Both share one composition: backbone → per-task features at stride 16 → interactions → per-task
decoders. ``hps`` has no interactions; ``mtinet`` refines task features along its guidance edges,
by default segmentation→depth and edge→depth (the paper §5.2), at stride 16 and optionally at
strides 8 and 4. Given one task, either model is that task's single-task baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.errors import MtlbenchError
from mtlbench.models.backbones import Backbone, conv_bn_relu
from mtlbench.models.base import MultiTaskModel, Outputs, check_tasks
from mtlbench.models.guidance import Edge, InteractionPoints, check_edges, graph_notes, task_graph
from mtlbench.options import Option, resolve_options
from mtlbench.registry import INTERACTIONS, MODELS
from mtlbench.tasks import Task


def _cat(*xs: Tensor) -> Tensor:
    return torch.cat(xs, dim=1)


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class SkipDecoder(nn.Module):
    """Depth decoder (the paper §5.2.1): bilinear upsampling with skip connections from strides 8 and
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
    """Segmentation decoder (the paper §5.2.1): four stride-2 transposed convolutions from stride 16
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
    """Edge decoder (the paper §5.2.1): 1×1 projections of the task features and the stride-4
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


# the decoder of each head kind a task asks for (Task.head): dense maps (depth, normals: PAD-Net and
# MTI-Net treat the two alike) read stride-8 and stride-4 skips, classes upsample by transposed
# convolutions, thin boundaries take the light decoder
DECODERS: dict[str, type[nn.Module]] = {"dense": SkipDecoder, "classes": TransposedDecoder, "boundary": LightDecoder}


class TaskFeatures(nn.Module):
    """Task-specific features at stride 16 from the stride-16 and stride-32 backbone maps."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.block = nn.Sequential(conv_bn_relu(2 * width, width), conv_bn_relu(width, width))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        return self.block(_cat(feats[2], _up(feats[3], feats[2])))


def decoders(tasks: Mapping[str, Task], width: int) -> nn.ModuleDict:
    """The paper's decoder of every task."""
    return nn.ModuleDict({t: DECODERS[task.head](width, task.out_channels) for t, task in tasks.items()})


class MultiTaskNet(MultiTaskModel):
    """Backbone → task features → interactions → decoders.

    Interactions apply at stride 16 on the task features, and at strides 8 and 4 (MTI-Net's
    multi-scale distillation) on per-task features made there from the backbone's map and the
    task's stride-16 features; a target's decoder then reads its refined features in place of
    the backbone's skip.

    Args:
        tasks: the tasks to predict, by name.
        backbone: a :class:`Backbone` (four scales, equal width).
        guidance: ``Edge → interaction module``; each refines the target's features with the
            guide's, coarse strides first and in the given order within a stride.
        name: the model's name in messages.
    """

    def __init__(self, tasks: Mapping[str, Task], backbone: Backbone,
                 guidance: Mapping[Edge, nn.Module] | None = None, name: str = "mtinet") -> None:
        super().__init__(check_tasks(name, tasks, DECODERS))
        if backbone.strides[2] != 16:
            raise MtlbenchError(f"backbone {backbone.name} has strides {backbone.strides}; "
                                f"model {name} needs its last four scales at strides 4, 8, 16, 32")
        self.backbone = backbone
        width = backbone.width
        guidance = dict(guidance or {})
        for edge in guidance:
            if not POINTS.can_refine(edge.target, edge.stride) or edge.stride not in POINTS.strides:
                raise MtlbenchError(f"model {name} cannot refine {edge.target} at stride {edge.stride}")
        self.edges = list(guidance)
        self.features = nn.ModuleDict({t: TaskFeatures(width) for t in tasks})
        self.guidance = nn.ModuleDict({edge_key(e): m for e, m in guidance.items()})
        # per stride below 16, features of each task an edge there refines (keyed by the task: its
        # decoder reads them, so they are its branch) or only reads (reached by the targets' losses)
        self.targets = {s: sorted({e.target for e in self.edges if e.stride == s}) for s in (8, 4)}
        fine = {s: self.targets[s] + sorted({e.guide + GUIDE_ONLY for e in self.edges if e.stride == s}
                                            - {t + GUIDE_ONLY for t in self.targets[s]}) for s in (8, 4)}
        self.lateral = nn.ModuleDict({str(s): nn.ModuleDict({k: conv_bn_relu(2 * width, width) for k in keys})
                                      for s, keys in fine.items() if keys})
        self.decoders = decoders(tasks, width)

    def encode(self, x: Tensor) -> list[Tensor]:
        return self.backbone(x)

    def _refine(self, feats: dict[str, Tensor], stride: int) -> None:
        for edge in self.edges:  # in the order given
            if edge.stride == stride:
                feats[edge.target] = self.guidance[edge_key(edge)](feats[edge.target], feats[edge.guide])

    def decode(self, shared: Sequence[Tensor], size: tuple[int, int]) -> Outputs:
        task_feats = {t: m(shared) for t, m in self.features.items()}
        self._refine(task_feats, 16)
        skips = {t: list(shared[:2]) for t in self.task_names}
        for stride, lateral in self.lateral.items():
            i = SKIP_INDEX[int(stride)]
            fine = {}
            for key, m in cast(nn.ModuleDict, lateral).items():
                t = key.removesuffix(GUIDE_ONLY)
                fine[t] = m(_cat(shared[i], _up(task_feats[t], shared[i])))
            self._refine(fine, int(stride))
            for t in self.targets[int(stride)]:
                skips[t][i] = fine[t]
        return {t: self.decoders[t](task_feats[t], skips[t], size) for t in self.task_names}


GUIDE_ONLY = "_guide"  # the key suffix of a task's features at a stride where it only guides
SKIP_INDEX = {4: 0, 8: 1}  # the decoders' skip list: the stride-4 map, then the stride-8 map
BENEATH_GUIDANCE = ("seg->depth", "edge->depth")
# the decoders that read stride-8 and stride-4 features: SkipDecoder both, LightDecoder stride 4
POINTS = InteractionPoints(strides=(16, 8, 4), tasks=(),  # edges at stride 16 may name any task
                           targets={8: ("depth", "normals"), 4: ("depth", "normals", "edge")})


def edge_key(edge: Edge) -> str:
    """The module name of an edge's interaction (stride 16 keeps the name earlier checkpoints use)."""
    return f"{edge.guide}_to_{edge.target}" + ("" if edge.stride == 16 else f"_at{edge.stride}")


def known_interaction(name: str) -> None:
    INTERACTIONS.entry(name)  # an unknown name raises with the close matches


def _validate(tasks: Sequence[str], options: Mapping[str, Any]) -> None:
    """A new run's edges must name trained tasks, except the paper's default edges, which apply
    where their tasks are trained so that one configuration trains any subset of tasks."""
    try:
        task_graph(options["guidance"], tasks, POINTS, optional=list(options["guidance"]) == list(BENEATH_GUIDANCE))
    except MtlbenchError as exc:  # worded as the option checks are
        raise MtlbenchError(f"model.options.guidance (model mtinet): {exc}") from None


@MODELS.register("mtinet", interaction_points=POINTS, validate=_validate, options={
    "interaction": Option("guided_attention", "guidance module (mtlbench list interactions); its options "
                          "in [model.interaction]", known_interaction),
    "guidance": Option(list(BENEATH_GUIDANCE), "guidance edges GUIDE->TARGET[@STRIDE] (stride 16, 8 or 4; "
                       "\"all\" is every pair), applied in order; [] is no guidance",
                       lambda edges: check_edges(edges, POINTS)),
})
def mtinet(tasks: Mapping[str, Task], backbone: Backbone, interaction: str,
           guidance: Sequence[str] = BENEATH_GUIDANCE,
           interaction_options: Mapping[str, Any] | None = None) -> MultiTaskNet:
    """The paper's model: task features refined along guidance edges (default seg→depth,
    edge→depth), task decoders."""
    # edges of untrained tasks are off here: runs written before new runs refused them still rebuild
    edges, off = task_graph(guidance, list(tasks), POINTS, optional=True)
    resolved = resolve_options(f"interaction {interaction}", INTERACTIONS.entry(interaction).options,
                               interaction_options or {}, "model.interaction")
    modules = {e: INTERACTIONS.build(interaction, backbone.width, **resolved) for e in edges}
    model = MultiTaskNet(tasks, backbone, modules)
    model.notes = graph_notes(edges, off, interaction, resolved)
    return model


@MODELS.register("hps")
def hps(tasks: Mapping[str, Task], backbone: Backbone) -> MultiTaskNet:
    """Hard parameter sharing: shared backbone, independent task features and decoders."""
    return MultiTaskNet(tasks, backbone, name="hps")
