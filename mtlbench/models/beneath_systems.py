"""The comparison systems of *Beneath the Surface* (its Table 1) on the project's backbones: FCN,
RefineNet (and its light-weight variant), PAP-Net and Context.

Each serves any non-empty subset of depth/seg/edge/normals: given one task it is that task's
single-task model (the papers' setting for FCN, RefineNet and Context, which were segmentation
networks), given several it is that network with one head per task on a shared encoder, so that
all of Table 1 can be trained under one protocol. ``docs/models.md`` says for each what follows
its paper and what differs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.errors import MtlbenchError
from mtlbench.models.backbones import Backbone, conv_bn_relu
from mtlbench.models.base import AUX, MultiTaskModel, Outputs, check_tasks
from mtlbench.models.multitask import DECODERS, TaskFeatures, decoders
from mtlbench.options import Option, at_least
from mtlbench.registry import INTERACTIONS, MODELS
from mtlbench.tasks import Task

STRIDES = [4, 8, 16, 32]


def _check(model: str, tasks: Mapping[str, Task], backbone: Backbone) -> list[str]:
    names = check_tasks(model, tasks, DECODERS)
    if list(backbone.strides) != STRIDES:
        raise MtlbenchError(f"backbone {backbone.name} has strides {backbone.strides}; model {model} needs "
                            f"its last four scales at strides 4, 8, 16, 32")
    return names


def _up(x: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class SharedDecoderNet(MultiTaskModel):
    """Backbone → a decoder shared by the tasks → one head per task. The decoder is shared, so
    gradient-level weightings combine the tasks' gradients over it as over the backbone."""

    def __init__(self, tasks: Sequence[str], backbone: Backbone) -> None:
        super().__init__(tasks)
        self.backbone = backbone

    def shared_modules(self) -> list[nn.Module]:
        return [self.backbone, *(m for m in (getattr(self, "decoder", None),) if isinstance(m, nn.Module))]

    def encode(self, x: Tensor) -> list[Tensor]:
        return self.backbone(x)


# --------------------------------------------------------------------------------------------
# FCN
# --------------------------------------------------------------------------------------------


def _score(cin: int, cout: int) -> nn.Conv2d:
    """A skip score layer, zero at the start as FCN initialises them (the coarse path first)."""
    conv = nn.Conv2d(cin, cout, 1, bias=False)
    nn.init.zeros_(conv.weight)
    return conv


class FCN(MultiTaskModel):
    """FCN-8s (Long, Shelhamer, Darrell, CVPR 2015) with torchvision's ``FCNHead`` per task.

    Per task: torchvision's ``FCNHead`` (3×3 conv to width/4, BN, ReLU, dropout 0.1, 1×1 conv to
    the task's channels) scores the stride-32 map; 1×1 score layers on the stride-16 and stride-8
    maps are added after upsampling (the skip fusion of FCN-8s), and the sum is upsampled to the
    input. Upsampling is bilinear and fixed, where FCN learns deconvolutions initialised bilinear.
    """

    def __init__(self, tasks: Mapping[str, Task], backbone: Backbone) -> None:
        super().__init__(_check("fcn", tasks, backbone))
        from torchvision.models.segmentation.fcn import FCNHead

        width = backbone.width
        self.backbone = backbone
        self.heads = nn.ModuleDict({t: FCNHead(width, task.out_channels) for t, task in tasks.items()})
        self.skip16 = nn.ModuleDict({t: _score(width, task.out_channels) for t, task in tasks.items()})
        self.skip8 = nn.ModuleDict({t: _score(width, task.out_channels) for t, task in tasks.items()})

    def encode(self, x: Tensor) -> list[Tensor]:
        return self.backbone(x)

    def decode(self, shared: Sequence[Tensor], size: tuple[int, int]) -> Outputs:
        out: Outputs = {}
        for t in self.task_names:
            x = self.heads[t](shared[3])
            x = _up(x, shared[2].shape[-2:]) + self.skip16[t](shared[2])
            x = _up(x, shared[1].shape[-2:]) + self.skip8[t](shared[1])
            out[t] = _up(x, size)
        return out


@MODELS.register("fcn")
def fcn(tasks: Mapping[str, Task], backbone: Backbone) -> FCN:
    """FCN-8s (Long et al., CVPR 2015): torchvision's FCN head per task, stride-16 and -8 skips."""
    return FCN(tasks, backbone)


# --------------------------------------------------------------------------------------------
# RefineNet
# --------------------------------------------------------------------------------------------


def _conv3(c: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, 3, padding=1, bias=False)


class RCU(nn.Module):
    """Residual conv unit: x + conv(relu(conv(relu(x))))."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), _conv3(c), nn.ReLU(), _conv3(c))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class CRP(nn.Module):
    """Chained residual pooling: x + Σ_k z_k, z_k = conv(maxpool5×5(z_{k−1})), z_0 = relu(x)
    (RefineNet: 3×3 convs; light-weight RefineNet: 1×1 convs, four blocks)."""

    def __init__(self, c: int, blocks: int, kernel: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, c, kernel, padding=kernel // 2, bias=False) for _ in range(blocks))

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        out, z = x, x
        for conv in self.convs:
            z = conv(F.max_pool2d(z, 5, stride=1, padding=2))
            out = out + z
        return out


class RefineBlock(nn.Module):
    """One RefineNet block: adaptive convs (RCUs) per input path, multi-resolution fusion (a conv
    per path, upsampled to the finest, summed), chained residual pooling, an output RCU. The
    light-weight block (Nekrasov et al., BMVC 2018) drops the RCUs and uses 1×1 convs."""

    def __init__(self, c: int, paths: int, light: bool) -> None:
        super().__init__()
        self.adapt = nn.ModuleList(nn.Identity() if light else nn.Sequential(RCU(c), RCU(c)) for _ in range(paths))
        k = 1 if light else 3
        self.fuse = nn.ModuleList(nn.Conv2d(c, c, k, padding=k // 2, bias=False) for _ in range(paths)) \
            if paths > 1 else nn.ModuleList()
        self.crp = CRP(c, 4 if light else 2, k)
        self.out = nn.Identity() if light else RCU(c)

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        xs = [a(x) for a, x in zip(self.adapt, xs)]
        x = xs[0]
        if len(xs) > 1:  # the first path is the finest
            x = self.fuse[0](xs[0])
            for conv, y in zip(self.fuse[1:], xs[1:]):
                x = x + _up(conv(y), x.shape[-2:])
        return self.out(self.crp(x))


class RefineDecoder(nn.Module):
    """RefineNet-4 cascaded: the stride-32 map refined alone, then each finer map refined with the
    coarser block's output, down to stride 4."""

    def __init__(self, c: int, light: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([RefineBlock(c, 1, light)] + [RefineBlock(c, 2, light) for _ in range(3)])

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        x = self.blocks[0]([feats[3]])
        for block, f in zip(self.blocks[1:], (feats[2], feats[1], feats[0])):
            x = block([f, x])
        return x


class RefineNet(SharedDecoderNet):
    """RefineNet (Lin et al., CVPR 2017), or light-weight RefineNet (Nekrasov et al., BMVC 2018)
    with ``light``; the decoder is shared and each task has a head on its stride-4 output (as
    Nekrasov et al.'s multi-task RefineNet, BMVC/ICRA 2019)."""

    def __init__(self, tasks: Mapping[str, Task], backbone: Backbone, light: bool) -> None:
        super().__init__(_check("refinenet", tasks, backbone), backbone)
        c = backbone.width
        self.decoder = RefineDecoder(c, light)
        self.heads = nn.ModuleDict({t: nn.Sequential(nn.Dropout(0.5) if not light else nn.Identity(),
                                                     conv_bn_relu(c, c // 2), nn.Conv2d(c // 2, task.out_channels, 1))
                                    for t, task in tasks.items()})
        kind = "light-weight (Nekrasov et al. 2018)" if light else "full (Lin et al. 2017)"
        self.notes = [f"RefineNet decoder: {kind}, shared by {', '.join(self.task_names)}"]

    def decode(self, shared: Sequence[Tensor], size: tuple[int, int]) -> Outputs:
        x = self.decoder(shared)
        return {t: _up(self.heads[t](x), size) for t in self.task_names}


@MODELS.register("refinenet", options={
    "light": Option(False, "light-weight RefineNet (Nekrasov et al. 2018): no RCUs, 1×1 convs"),
})
def refinenet(tasks: Mapping[str, Task], backbone: Backbone, light: bool) -> RefineNet:
    """RefineNet (Lin et al., CVPR 2017): multi-path refinement; light=true: Nekrasov et al. 2018."""
    return RefineNet(tasks, backbone, light)


# --------------------------------------------------------------------------------------------
# PAP-Net
# --------------------------------------------------------------------------------------------


class Affinity(nn.Module):
    """A task's affinity between positions, softmax(θ(F)·φ(F)ᵀ/√d) (rows: every position of the
    map; columns: the map pooled to at most ``grid``×``grid``), so that its cost is
    (H·W)×grid² per image whatever the input size, as the paper's attention is bounded."""

    def __init__(self, channels: int, dim: int, grid: int) -> None:
        super().__init__()
        self.theta = nn.Conv2d(channels, dim, 1)
        self.phi = nn.Conv2d(channels, dim, 1)
        self.dim, self.grid = dim, grid

    def forward(self, x: Tensor) -> Tensor:
        q = self.theta(x).flatten(2).transpose(1, 2)  # B×HW×d
        k = self.phi(pool_to(x, self.grid)).flatten(2)  # B×d×G
        return torch.softmax(q @ k / math.sqrt(self.dim), -1)


def pool_to(x: Tensor, grid: int) -> Tensor:
    """``x`` average-pooled to at most ``grid``×``grid`` positions."""
    h, w = x.shape[-2:]
    return F.adaptive_avg_pool2d(x, (min(grid, h), min(grid, w))) if max(h, w) > grid else x


def propagate(affinity: Tensor, x: Tensor, grid: int) -> Tensor:
    """Σ_q A[p, q]·x(q) over the pooled positions q, as a B×C×H×W map."""
    b, c, h, w = x.shape
    v = pool_to(x, grid).flatten(2).transpose(1, 2)  # B×G×C
    return (affinity @ v).transpose(1, 2).reshape(b, c, h, w)


class AffinityPropagation(nn.Module):
    """PAP-Net's cross-task propagation as an interaction: the guide's affinity between positions
    propagates the target's features, added back with a learnt step γ (0 at initialisation, so
    the module starts as the identity)."""

    def __init__(self, channels: int, dim: int = 64, grid: int = 16, steps: int = 1) -> None:
        super().__init__()
        self.affinity = Affinity(channels, dim, grid)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.steps = steps

    def attention_maps(self, target: Tensor, source: Tensor) -> Tensor:
        return self.affinity(source).unsqueeze(1)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        a = self.affinity(source)
        x = target
        for _ in range(self.steps):
            x = x + self.gamma * propagate(a, x, self.affinity.grid)
        return x


@INTERACTIONS.register("affinity_propagation", options={"dim": 64, "grid": 16, "steps": 1}, identity_at_init=True)
def affinity_propagation(channels: int, dim: int = 64, grid: int = 16, steps: int = 1) -> nn.Module:
    """PAP-Net (CVPR 2019): the guide's affinity between positions propagates the target's features."""
    return AffinityPropagation(channels, dim, grid, steps)


class PAPNet(MultiTaskModel):
    """PAP-Net (Zhang et al., CVPR 2019): task features with initial predictions (deeply
    supervised), one affinity matrix per task, combined per target task with learnt softmax
    weights (cross-task affinity), ``steps`` propagation steps on each task's features, the
    paper's decoders."""

    def __init__(self, tasks: Mapping[str, Task], backbone: Backbone, dim: int, grid: int, steps: int) -> None:
        super().__init__(_check("papnet", tasks, backbone))
        width = backbone.width
        self.backbone = backbone
        self.steps, self.grid = steps, grid
        self.features = nn.ModuleDict({t: TaskFeatures(width) for t in tasks})
        self.initial = nn.ModuleDict({t: nn.Conv2d(width, task.out_channels, 1) for t, task in tasks.items()})
        self.affinity = nn.ModuleDict({t: Affinity(width, dim, grid) for t in tasks})
        n = len(self.task_names)
        mix = torch.full((n, n), 0.0)
        mix.fill_diagonal_(1.0)  # each task's own affinity first, as the paper's initial weighting
        self.mix = nn.Parameter(mix)
        self.gamma = nn.ParameterDict({t: nn.Parameter(torch.zeros(1)) for t in tasks})
        self.decoders = decoders(tasks, width)
        self.notes = [f"PAP-Net: affinities of {', '.join(self.task_names)} combined per task, {steps} propagation "
                      f"step(s), keys pooled to at most {grid}×{grid} positions"]

    def encode(self, x: Tensor) -> list[Tensor]:
        return self.backbone(x)

    def decode(self, shared: Sequence[Tensor], size: tuple[int, int]) -> Outputs:
        feats = {t: self.features[t](shared) for t in self.task_names}
        affinities = torch.stack([self.affinity[t](feats[t]) for t in self.task_names])  # T×B×HW×G
        weights = torch.softmax(self.mix, 1).to(affinities.dtype)
        out: Outputs = {}
        for i, t in enumerate(self.task_names):
            combined = torch.einsum("s,sbpq->bpq", weights[i], affinities)
            x = feats[t]
            for _ in range(self.steps):
                x = x + self.gamma[t] * propagate(combined, x, self.grid)
            out[t] = self.decoders[t](x, shared[:2], size)
        if self.training:
            out[AUX] = [{t: self.initial[t](feats[t]) for t in self.task_names}]
        return out


@MODELS.register("papnet", options={
    "dim": Option(64, "affinity embedding width", at_least(1)),
    "grid": Option(16, "keys pooled to at most grid×grid positions (bounds the affinity)", at_least(1)),
    "steps": Option(2, "propagation steps", at_least(1)),
})
def papnet(tasks: Mapping[str, Task], backbone: Backbone, dim: int, grid: int, steps: int) -> PAPNet:
    """PAP-Net (Zhang et al., CVPR 2019): per-task affinities combined across tasks propagate features."""
    return PAPNet(tasks, backbone, dim, grid, steps)


# --------------------------------------------------------------------------------------------
# Context
# --------------------------------------------------------------------------------------------


class Context(SharedDecoderNet):
    """The FeatMap-Net of Lin et al. (CVPR 2016, "Efficient piecewise training of deep structured
    models for semantic segmentation"): the image at three scales through the shared encoder, the
    stride-16 maps of each upsampled to the first's and concatenated, sliding pyramid pooling
    (the map with its 5×5 and 9×9 stride-1 max-pooled versions, concatenated), then a unary head
    per task. The CRF (pairwise potentials, piecewise training, mean-field inference) and the
    dense-CRF refinement are omitted (``docs/models.md``)."""

    def __init__(self, tasks: Mapping[str, Task], backbone: Backbone, scales: Sequence[float]) -> None:
        super().__init__(_check("context", tasks, backbone), backbone)
        c = backbone.width
        self.scales = list(scales)
        self.decoder = nn.Sequential(conv_bn_relu(len(self.scales) * c, c, k=1))
        self.pyramid = (5, 9)
        self.heads = nn.ModuleDict({t: nn.Sequential(conv_bn_relu(c * (1 + len(self.pyramid)), c),
                                                     nn.Conv2d(c, task.out_channels, 1))
                                    for t, task in tasks.items()})

    def encode(self, x: Tensor) -> list[Tensor]:
        stride = self.backbone.total_stride
        maps = []
        for s in self.scales:
            if s == 1:
                y = x
            else:  # each scale a multiple of the deepest stride, as the backbone needs
                side = [max(stride, round(d * s / stride) * stride) for d in x.shape[-2:]]
                y = F.interpolate(x, size=side, mode="bilinear", align_corners=False)
            maps.append(self.backbone(y)[2])
        size = maps[0].shape[-2:]
        return [torch.cat([m if m.shape[-2:] == size else _up(m, size) for m in maps], 1)]

    def decode(self, shared: Sequence[Tensor], size: tuple[int, int]) -> Outputs:
        x = self.decoder(shared[0])
        x = torch.cat([x] + [F.max_pool2d(x, k, stride=1, padding=k // 2) for k in self.pyramid], 1)
        return {t: _up(self.heads[t](x), size) for t in self.task_names}


def _scales(value: Sequence[float]) -> str | None:
    ok = len(value) >= 1 and all(isinstance(s, (int, float)) and 0 < s <= 2 for s in value) and value[0] == 1
    return None if ok else f"must list input scales in (0, 2], the first 1.0 (the output's), got {list(value)}"


@MODELS.register("context", options={
    "scales": Option([1.0, 0.75, 0.5], "input scales through the shared encoder (the paper: 1.2, 0.8, 0.4 of "
                     "its input)", _scales),
})
def context(tasks: Mapping[str, Task], backbone: Backbone, scales: Sequence[float]) -> Context:
    """Context (Lin et al., CVPR 2016): multi-scale FeatMap-Net with sliding pyramid pooling, no CRF."""
    return Context(tasks, backbone, scales)
