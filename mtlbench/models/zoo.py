"""Model zoo: PAD-Net, cross-stitch networks and MTAN on the project's backbones and decoders.

All three serve any non-empty subset of depth/seg/edge, take a :class:`Backbone` whose last four
scales are at strides 4, 8, 16 and 32, and end in the same per-task pieces as ``hps``: a
:class:`TaskFeatures` block (strides 16 and 32 fused at stride 16) and the task's decoder from
:data:`DECODERS`, fed with stride-4/8 skip features. What differs between them is how the tasks
share information before the decoders:

* ``padnet``: a shared backbone, intermediate (deeply supervised) per-task predictions, then
  attention-guided multi-modal distillation between the tasks' features.
* ``cross_stitch``: one backbone copy per task, mixed after every feature stage by learnt
  channel-wise linear combinations.
* ``mtan``: a shared backbone with per-task soft attention masks at every scale.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.errors import MtlbenchError
from mtlbench.models.backbones import NUM_SCALES, Backbone, conv_bn_relu
from mtlbench.models.base import AUX, MultiTaskModel, Outputs, check_tasks
from mtlbench.models.multitask import DECODERS, TaskFeatures, decoders
from mtlbench.options import Option
from mtlbench.registry import MODELS
from mtlbench.tasks import Task

STRIDES = [4, 8, 16, 32]


def _check(model: str, tasks: Mapping[str, Task], backbone: Backbone) -> list[str]:
    """The task names, after one-line errors for no tasks, unknown tasks or unusable strides."""
    names = check_tasks(model, tasks, DECODERS)
    if list(backbone.strides) != STRIDES:
        raise MtlbenchError(f"backbone {backbone.name} has strides {backbone.strides}; model {model} needs "
                            f"its last four scales at strides 4, 8, 16, 32")
    return names


# --------------------------------------------------------------------------------------------
# PAD-Net
# --------------------------------------------------------------------------------------------


class AttentionDistillation(nn.Module):
    """PAD-Net's multi-modal distillation, variant C (attention-guided message passing)::

        F_t^o = F_t + Σ_{s≠t} G_t ⊙ (W_{s→t} ∗ F_s),   G_t = σ(W_g^t ∗ F_t)

    The gate ``G_t`` is computed from the receiving task's own features and decides, per pixel
    and channel, how much of the other tasks' messages it takes in. ``W`` are 3×3 convolutions.
    With one task there is nothing to pass and the module is the identity.
    """

    def __init__(self, tasks: Sequence[str], width: int) -> None:
        super().__init__()
        self.tasks = list(tasks)
        multi = len(self.tasks) > 1
        self.gates = nn.ModuleDict({t: nn.Conv2d(width, width, 3, padding=1) for t in self.tasks} if multi else {})
        self.messages = nn.ModuleDict({f"{s}_to_{t}": nn.Conv2d(width, width, 3, padding=1)
                                       for t in self.tasks for s in self.tasks if s != t})

    def forward(self, feats: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for t in self.tasks:
            others = [s for s in self.tasks if s != t]
            if not others:
                out[t] = feats[t]
                continue
            gate = torch.sigmoid(self.gates[t](feats[t]))
            message = sum(self.messages[f"{s}_to_{t}"](feats[s]) for s in others)
            out[t] = feats[t] + gate * message
        return out


class PADNet(MultiTaskModel):
    """PAD-Net (Xu, Ouyang, Wang, Sebe: "PAD-Net: Multi-Tasks Guided Prediction-and-Distillation
    Network for Simultaneous Depth Estimation and Scene Parsing", CVPR 2018).

    Shared backbone → per-task intermediate features from the deepest scales (strides 16 and 32)
    → an intermediate prediction per task (1×1 conv; deep supervision, returned in training as
    one ``out["aux"]`` dict at stride 16) → multi-modal distillation, variant C
    (:class:`AttentionDistillation`) → the task decoders with stride-4/8 backbone skips.

    Differs from the paper: the front-end is any timm backbone reduced to ``width`` channels,
    not their ResNet/deconv front-end; the intermediate tasks are exactly the requested tasks
    (the paper also predicts surface normals and contours as auxiliaries for NYUD depth/seg);
    distillation runs on the intermediate heads' feature maps at stride 16 rather than on
    upsampled predictions; the final decoders are the project's per-task decoders.
    """

    def __init__(self, tasks: Mapping[str, Task], backbone: Backbone) -> None:
        super().__init__(_check("padnet", tasks, backbone))
        width = backbone.width
        self.backbone = backbone
        self.features = nn.ModuleDict({t: TaskFeatures(width) for t in tasks})
        self.initial = nn.ModuleDict({t: nn.Conv2d(width, task.out_channels, 1) for t, task in tasks.items()})
        self.distill = AttentionDistillation(self.task_names, width)
        self.decoders = decoders(tasks, width)
        self.notes = [f"PAD-Net distillation: attention-guided message passing (variant C) between "
                      f"{', '.join(self.task_names)}; deep supervision of the intermediate predictions"]

    def encode(self, x: Tensor) -> list[Tensor]:
        return self.backbone(x)

    def decode(self, shared: Sequence[Tensor], size: tuple[int, int]) -> Outputs:
        task_feats = {t: self.features[t](shared) for t in self.task_names}
        distilled = self.distill(task_feats)
        out: Outputs = {t: self.decoders[t](distilled[t], shared[:2], size) for t in self.task_names}
        if self.training:
            out[AUX] = [{t: self.initial[t](task_feats[t]) for t in self.task_names}]
        return out


@MODELS.register("padnet")
def padnet(tasks: Mapping[str, Task], backbone: Backbone) -> PADNet:
    """PAD-Net (CVPR 2018): intermediate predictions, attention-guided distillation, decoders."""
    return PADNet(tasks, backbone)


# --------------------------------------------------------------------------------------------
# Cross-stitch networks
# --------------------------------------------------------------------------------------------


class CrossStitchUnit(nn.Module):
    """Channel-wise cross-stitch unit: ``x'_t[c] = Σ_s α[t, s, c] · x_s[c]``.

    α starts identity-dominant as in the paper: ``α_tt = self_weight`` (0.9) and
    ``α_ts = (1 − self_weight) / (T − 1)``. With one task it is the identity (no parameters).
    """

    def __init__(self, num_tasks: int, channels: int, self_weight: float = 0.9) -> None:
        super().__init__()
        if num_tasks < 1:
            raise MtlbenchError("a cross-stitch unit needs at least one task")
        self.num_tasks = num_tasks
        if num_tasks == 1:
            self.register_buffer("alpha", torch.ones(1, 1, channels))
            return
        alpha = torch.full((num_tasks, num_tasks, channels), (1.0 - self_weight) / (num_tasks - 1))
        alpha[torch.arange(num_tasks), torch.arange(num_tasks)] = self_weight
        self.alpha = nn.Parameter(alpha)

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        if self.num_tasks == 1:
            return list(xs)
        mixed = torch.einsum("tsc,sbchw->tbchw", self.alpha.to(xs[0].dtype), torch.stack(list(xs)))
        return list(mixed.unbind(0))


def encoder_stages(encoder: nn.Module, name: str = "backbone") -> list[list[str]]:
    """Submodule paths of a timm ``features_only`` encoder, grouped into its last four feature
    stages: running stage k's modules in order on stage k−1's output gives feature k.

    Modules before the fourth-last feature go into the first stage. Understands timm's
    ``FeatureListNet``/``FeatureDictNet`` (via ``return_layers``) and ``EfficientNetFeatures``.

    Raises:
        MtlbenchError: any other encoder (e.g. hook- or getter-based feature extractors).
    """
    from timm.models import EfficientNetFeatures, FeatureDictNet  # heavy: timm pulls in torchvision (~2 s)

    steps: list[tuple[str, bool]]  # (submodule path, whether a feature is returned after it)
    if isinstance(encoder, FeatureDictNet):
        steps = [(n, n in encoder.return_layers) for n in encoder.keys()]
    elif isinstance(encoder, EfficientNetFeatures) and encoder.feature_hooks is None:
        returned = set(encoder.feature_info.module_name())
        steps = [("conv_stem", False), ("bn1", "bn1" in returned)]
        steps += [(f"blocks.{i}", f"blocks.{i}" in returned) for i in range(len(encoder.blocks))]
    else:
        raise MtlbenchError(f"cross_stitch cannot split backbone {name} ({type(encoder).__name__}) into stages: "
                            f"it needs a timm FeatureListNet or EfficientNetFeatures encoder, e.g. resnet50, "
                            f"convnext_tiny or efficientnet_b0")
    stages: list[list[str]] = []
    current: list[str] = []
    for path, returns in steps:
        current.append(path)
        if returns:
            stages.append(current)
            current = []
    expected = len(encoder.feature_info.channels())
    if len(stages) != expected or len(stages) < NUM_SCALES:
        raise MtlbenchError(f"cross_stitch cannot split backbone {name} into stages: found {len(stages)} "
                            f"feature points, expected {expected}")
    head = [p for s in stages[:-NUM_SCALES] for p in s]
    stages = stages[-NUM_SCALES:]
    stages[0] = head + stages[0]
    return stages


class CrossStitchNet(MultiTaskModel):
    """Cross-stitch networks (Misra, Shrivastava, Gupta, Hebert: "Cross-stitch Networks for
    Multi-task Learning", CVPR 2016).

    One copy of the backbone per task (deep copies, so all start from the same weights, as the
    paper's copies all start from one ImageNet model). The encoders run stage by stage; after
    each of the four feature stages (strides 4, 8, 16, 32) a :class:`CrossStitchUnit` mixes the
    tasks' activations channel-wise, and the mixed activations both feed the next stage and are
    the task's features at that scale. Each task then has its own 1×1 reduction, task-feature
    block and decoder, i.e. with α = identity each task's branch is exactly the single-task
    ``hps`` network.

    Differs from the paper: units sit after the four stages of a modern backbone instead of
    after AlexNet's pool/fc layers; the paper scales α's learning rate by 10³ under SGD, here α
    trains with the rest (Adam's steps do not depend on the gradient scale); α is per channel
    (the paper's channel-wise variant) and is not constrained to convex combinations.
    """

    def __init__(self, tasks: Mapping[str, Task], backbone: Backbone, self_weight: float = 0.9) -> None:
        super().__init__(_check("cross_stitch", tasks, backbone))
        self.stages = encoder_stages(backbone.encoder, backbone.name)
        width = backbone.width
        self.branches = nn.ModuleDict({t: copy.deepcopy(backbone) for t in self.task_names})
        self.units = nn.ModuleList(CrossStitchUnit(len(self.task_names), c, self_weight)
                                   for c in backbone.in_channels)
        self.features = nn.ModuleDict({t: TaskFeatures(width) for t in tasks})
        self.decoders = decoders(tasks, width)
        self.notes = [f"cross-stitch: {len(self.task_names)} backbone copies, units after strides "
                      f"{', '.join(map(str, STRIDES))}"]

    def _branch(self, task: str) -> Backbone:
        branch = self.branches[task]
        assert isinstance(branch, Backbone)  # nn.ModuleDict items are typed Module
        return branch

    def _run_stage(self, task: str, k: int, x: Tensor) -> Tensor:
        encoder = self._branch(task).encoder
        for path in self.stages[k]:
            x = encoder.get_submodule(path)(x)
        if not isinstance(x, Tensor):
            raise MtlbenchError(f"cross_stitch: stage {k} of backbone {self._branch(task).name} returns "
                                f"{type(x).__name__}, not a tensor; this backbone cannot be cross-stitched")
        return x

    def backbone_features(self, x: Tensor) -> dict[str, list[Tensor]]:
        """Each task's four reduced feature maps (finest first), after cross-stitching."""
        xs = [x] * len(self.task_names)
        feats: dict[str, list[Tensor]] = {t: [] for t in self.task_names}
        for k, unit in enumerate(self.units):
            xs = unit([self._run_stage(t, k, h) for t, h in zip(self.task_names, xs)])
            for t, h in zip(self.task_names, xs):
                feats[t].append(self._branch(t).reduce[k](h))
        return feats

    def shared_modules(self) -> list[nn.Module]:
        return [self.units]  # each task has its own backbone; only the units mix them

    def forward(self, x: Tensor) -> Outputs:
        size = (x.shape[-2], x.shape[-1])
        feats = self.backbone_features(x)
        return {t: self.decoders[t](self.features[t](feats[t]), feats[t][:2], size) for t in self.task_names}


def _stitch_weight(v: float) -> str | None:
    return None if 0 < v <= 1 else f"must lie in (0, 1], got {v}"


@MODELS.register("cross_stitch", options={
    "self_weight": Option(0.9, "initial weight of a task's own activations in every unit", _stitch_weight),
})
def cross_stitch(tasks: Mapping[str, Task], backbone: Backbone, self_weight: float) -> CrossStitchNet:
    """Cross-stitch networks (CVPR 2016): a backbone per task, mixed after every stage."""
    return CrossStitchNet(tasks, backbone, self_weight)


# --------------------------------------------------------------------------------------------
# MTAN
# --------------------------------------------------------------------------------------------


class AttentionMask(nn.Module):
    """One task's attention module at one scale: ``σ(BN(1×1(ReLU(BN(1×1([u; a_prev]))))))``,
    a soft mask with the shared features' shape."""

    def __init__(self, width: int, first: bool) -> None:
        super().__init__()
        cin = width if first else 2 * width
        self.net = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.Sigmoid())

    def forward(self, shared: Tensor, previous: Tensor | None = None) -> Tensor:
        return self.net(shared if previous is None else torch.cat([shared, previous], dim=1))


def _down_to(x: Tensor, like: Tensor) -> Tensor:
    """2× max pooling to the next scale (bilinear resize if the sizes do not halve exactly)."""
    x = F.max_pool2d(x, 2, ceil_mode=True)
    if x.shape[-2:] != like.shape[-2:]:
        x = F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)
    return x


class MTAN(MultiTaskModel):
    """Multi-Task Attention Network (Liu, Johns, Davison: "End-to-End Multi-Task Learning with
    Attention", CVPR 2019).

    A shared backbone gives features ``p^k`` at strides 4–32. At each scale k every task has an
    attention module producing a soft mask ``a_t^k = σ(...)`` from the shared features and, for
    k > 0, its previous attended features ``â_t^{k−1}`` passed through a 3×3 conv block shared by
    the tasks (as in the paper) and 2× max-pooled; the task's features are
    ``â_t^k = a_t^k ⊙ p^k``. Each task's decoder runs on its attended features (stride 16/32
    fused, stride 4/8 as skips).

    Differs from the paper: the backbone is a black-box timm encoder, so the mask is computed
    from and applied to the same stage output (the paper computes it from a block's first layer
    and applies it to its last); attention is on the encoder side only (the paper's SegNet
    decoder also has attention modules), and the decoders are the project's per-task decoders.
    """

    def __init__(self, tasks: Mapping[str, Task], backbone: Backbone) -> None:
        super().__init__(_check("mtan", tasks, backbone))
        width = backbone.width
        self.backbone = backbone
        self.attention = nn.ModuleDict({t: nn.ModuleList(AttentionMask(width, first=k == 0)
                                                         for k in range(NUM_SCALES)) for t in tasks})
        self.carry = nn.ModuleList(conv_bn_relu(width, width) for _ in range(NUM_SCALES - 1))
        self.features = nn.ModuleDict({t: TaskFeatures(width) for t in tasks})
        self.decoders = decoders(tasks, width)
        self.notes = [f"MTAN: per-task soft attention on the shared features at strides "
                      f"{', '.join(map(str, STRIDES))} for {', '.join(self.task_names)}"]

    def attend(self, feats: Sequence[Tensor]) -> tuple[dict[str, list[Tensor]], dict[str, list[Tensor]]]:
        """Per task, the attended features and the masks at every scale (finest first)."""
        attended: dict[str, list[Tensor]] = {}
        masks: dict[str, list[Tensor]] = {}
        for t in self.task_names:
            attended[t], masks[t] = [], []
            attention = self.attention[t]
            assert isinstance(attention, nn.ModuleList)  # nn.ModuleDict items are typed Module
            for k, shared in enumerate(feats):
                previous = None if k == 0 else _down_to(self.carry[k - 1](attended[t][-1]), shared)
                mask = attention[k](shared, previous)
                masks[t].append(mask)
                attended[t].append(mask * shared)
        return attended, masks

    def shared_modules(self) -> list[nn.Module]:
        return [self.backbone, self.carry]

    def encode(self, x: Tensor) -> list[Tensor]:
        return self.backbone(x)

    def decode(self, shared: Sequence[Tensor], size: tuple[int, int]) -> Outputs:
        attended, _ = self.attend(shared)
        return {t: self.decoders[t](self.features[t](attended[t]), attended[t][:2], size)
                for t in self.task_names}


@MODELS.register("mtan")
def mtan(tasks: Mapping[str, Task], backbone: Backbone) -> MTAN:
    """MTAN (CVPR 2019): shared backbone, per-task attention masks at every scale, decoders."""
    return MTAN(tasks, backbone)
