"""Task losses. Each takes the raw head output and the batch and returns a scalar.

A loss factory takes the dataset's :class:`~mtlbench.tasks.DatasetInfo` (maximum depth, ignore
label) and the options it declares (``[loss.options.TASK]``).

Depth targets arrive in metres (0 = invalid) and are compared on depth normalised by
``max_depth`` to [0, 1], as *Beneath the Surface* does; heads therefore predict normalised depth.
"""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.options import Option, at_least
from mtlbench.registry import LOSSES
from mtlbench.tasks import DatasetInfo

IGNORE_INDEX = 255


def valid_depth_mask(depth: Tensor, max_depth: float) -> Tensor:
    """Pixels with a usable depth target: ``0 < depth <= max_depth``."""
    return (depth > 0) & (depth <= max_depth)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    # A batch without a single valid pixel contributes zero, not NaN.
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def _erode(mask: Tensor) -> Tensor:
    """Pixels whose whole 3×3 neighbourhood is valid (the reach of a Sobel kernel)."""
    return -F.max_pool2d(-mask.float(), 3, stride=1, padding=1) > 0.5


def gradient_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute difference of the Sobel gradients of ``pred`` and ``target`` (B×1×H×W),
    over pixels whose Sobel neighbourhood is entirely valid."""
    grad = kornia.filters.spatial_gradient(pred - target, mode="sobel")  # B×1×2×H×W
    return _masked_mean(grad.abs().squeeze(1), _erode(mask))


def edge_aware_smoothness(pred: Tensor, image: Tensor, mask: Tensor) -> Tensor:
    """Depth gradients penalised where the image is flat: |∇D|·exp(−|∇I|), per axis."""
    grad_d = kornia.filters.spatial_gradient(pred, mode="sobel").abs().squeeze(1)  # B×2×H×W
    grad_i = kornia.filters.spatial_gradient(image, mode="sobel").abs().mean(1)  # B×2×H×W
    return _masked_mean(grad_d * torch.exp(-grad_i), _erode(mask))


class StructuredDepthLoss(nn.Module):
    """The paper's depth loss: α·L1 + β·gradient + γ·edge-aware, masked on invalid depth.

    Args:
        max_depth: metres mapped to 1.0.
        alpha: weight of the L1 term.
        beta: weight of the gradient term (Sobel gradients of prediction minus target).
        gamma: weight of the edge-aware smoothness term (image-gradient weighted).
    """

    def __init__(self, max_depth: float = 10.0, alpha: float = 1.0, beta: float = 1.0,
                 gamma: float = 0.1) -> None:
        super().__init__()
        self.max_depth, self.alpha, self.beta, self.gamma = max_depth, alpha, beta, gamma

    def forward(self, pred: Tensor, batch: dict[str, Tensor]) -> Tensor:
        depth = batch["depth"]
        mask = valid_depth_mask(depth, self.max_depth)
        target = depth / self.max_depth
        pred = pred.float()
        loss = self.alpha * _masked_mean((pred - target).abs(), mask)
        if self.beta:
            loss = loss + self.beta * gradient_loss(pred, target, mask)
        if self.gamma:
            loss = loss + self.gamma * edge_aware_smoothness(pred, batch["image"].float(), mask)
        return loss


class L1DepthLoss(StructuredDepthLoss):
    """Masked L1 on normalised depth alone."""

    def __init__(self, max_depth: float = 10.0) -> None:
        super().__init__(max_depth, alpha=1.0, beta=0.0, gamma=0.0)


class SegCrossEntropy(nn.Module):
    """Pixel-wise cross-entropy, the ignore label (255) skipped; a batch with no labelled pixel gives 0."""

    def __init__(self, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, batch: dict[str, Tensor]) -> Tensor:
        target = batch["seg"].long()
        losses = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none")
        return _masked_mean(losses, target != self.ignore_index)


class BalancedBCE(nn.Module):
    """Binary cross-entropy for edges with the positive class weighted.

    Each edge pixel's loss is weighted by ``pos_weight`` and each non-edge pixel's by
    ``1 - pos_weight`` (MTI-Net's balanced BCE; 0.95 there), averaged over all pixels.

    Args:
        pos_weight: weight of edge pixels, in (0, 1).
    """

    def __init__(self, pos_weight: float = 0.95) -> None:
        super().__init__()
        if not 0.0 < pos_weight < 1.0:
            raise ValueError(f"pos_weight must lie in (0, 1), got {pos_weight}")
        self.pos_weight = pos_weight

    def forward(self, logits: Tensor, batch: dict[str, Tensor]) -> Tensor:
        target = batch["edge"].float()
        weight = target * self.pos_weight + (1 - target) * (1 - self.pos_weight)
        return F.binary_cross_entropy_with_logits(logits.float(), target, weight=weight)


def _strictly_between_0_and_1(v: float) -> str | None:
    return None if 0 < v < 1 else f"must lie strictly between 0 and 1, got {v}"


NON_NEGATIVE = at_least(0)


@LOSSES.register("structured_depth", task="depth", options={
    "alpha": Option(1.0, "weight of the L1 term", NON_NEGATIVE),
    "beta": Option(1.0, "weight of the Sobel-gradient term", NON_NEGATIVE),
    "gamma": Option(0.1, "weight of the edge-aware smoothness term", NON_NEGATIVE),
})
def structured_depth(info: DatasetInfo, alpha: float, beta: float, gamma: float) -> nn.Module:
    """The paper's depth loss: α·L1 + β·Sobel-gradient + γ·edge-aware smoothness (masked)."""
    return StructuredDepthLoss(info.max_depth, alpha, beta, gamma)


@LOSSES.register("l1_depth", task="depth")
def l1_depth(info: DatasetInfo) -> nn.Module:
    """Masked L1 on normalised depth."""
    return L1DepthLoss(info.max_depth)


@LOSSES.register("cross_entropy", task="seg")
def cross_entropy(info: DatasetInfo) -> nn.Module:
    """Pixel-wise cross-entropy, the ignore label (255) skipped."""
    return SegCrossEntropy(info.ignore_index)


@LOSSES.register("balanced_bce", task="edge", options={
    "pos_weight": Option(0.95, "weight of edge pixels (non-edge pixels: 1 - pos_weight)", _strictly_between_0_and_1),
})
def balanced_bce(info: DatasetInfo, pos_weight: float) -> nn.Module:
    """Binary cross-entropy with edge pixels weighted by pos_weight."""
    return BalancedBCE(pos_weight)


def valid_normals_mask(normals: Tensor) -> Tensor:
    """Pixels with a usable normal target (B×3×H×W → B×1×H×W): unit vectors, not the zero
    vector that marks invalid pixels."""
    return normals.float().square().sum(1, keepdim=True) > 0.25


class NormalsLoss(nn.Module):
    """Surface normals: the prediction normalised to unit length, then L1 against the target
    (MTI-Net's ``NormalsLoss`` with ``normalize=True``) or ``1 − cos`` of the angle, averaged over
    the pixels with a valid target.

    Args:
        kind: ``"l1"`` (mean over valid pixels and the three components) or ``"cosine"``.
    """

    def __init__(self, kind: str = "l1") -> None:
        super().__init__()
        if kind not in ("l1", "cosine"):
            raise ValueError(f"normals loss {kind!r}: choose l1 or cosine")
        self.kind = kind

    def forward(self, pred: Tensor, batch: dict[str, Tensor]) -> Tensor:
        target = batch["normals"].float()
        mask = valid_normals_mask(target)
        unit = F.normalize(pred.float(), dim=1, eps=1e-6)
        if self.kind == "cosine":
            return _masked_mean(1 - (unit * target).sum(1, keepdim=True), mask)
        return _masked_mean((unit - target).abs(), mask)


@LOSSES.register("normals_l1", task="normals")
def normals_l1(info: DatasetInfo) -> nn.Module:
    """L1 between the normalised prediction and the unit normal, masked where invalid (MTI-Net's)."""
    return NormalsLoss("l1")


@LOSSES.register("normals_cosine", task="normals")
def normals_cosine(info: DatasetInfo) -> nn.Module:
    """1 − cosine of the angle between prediction and unit normal, masked where invalid."""
    return NormalsLoss("cosine")
