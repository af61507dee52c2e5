"""Per-batch work on the training device: augmentation, normalisation, edge targets.

On a GPU the CPU only slices arrays; every per-pixel step runs here, batched.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.filters import sobel
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def depth_edges(depth: Tensor, threshold: float) -> Tensor:
    """Depth discontinuities (B×1×H×W metres → {0, 1}): the magnitude of kornia's normalised
    Sobel of log depth above ``threshold``, where the whole 3×3 neighbourhood has valid depth.
    A step by a depth ratio r gives ln(r)/2 on both sides (0.35 for r = 2)."""
    valid = depth > 0
    grad = sobel(torch.log(depth.clamp_min(1e-3)))
    whole = -F.max_pool2d(-valid.float(), 3, stride=1, padding=1) > 0.5
    return ((grad > threshold) & whole).float()


def label_edges(seg: Tensor, thickness: int = 1) -> Tensor:
    """Edge targets from label boundaries (B×1×H×W labels → B×1×H×W float {0, 1}).

    A pixel is an edge where its 3×3 neighbourhood holds another label (both sides of a
    boundary; the image border is replicated, so it is no edge); ``thickness`` > 1 dilates that
    by ``thickness − 1`` pixels. This is the support of the label map's Sobel response, made
    exact: Sobel itself cancels to zero on 1-pixel lines and isolated pixels.
    """
    padded = F.pad(seg.float(), (1, 1, 1, 1), mode="replicate")
    edges = F.max_pool2d(padded, 3, stride=1) != -F.max_pool2d(-padded, 3, stride=1)
    if thickness > 1:
        k = 2 * (thickness - 1) + 1
        edges = F.max_pool2d(edges.float(), k, stride=1, padding=k // 2) > 0
    return edges.float()


class BatchPipeline:
    """Turns raw batches from :meth:`DenseDataset.batch` into model-ready tensors.

    Training batches get random horizontal flip, random resized crop (image bilinear, depth and
    labels nearest, so invalid depth never blends into valid) and colour jitter on the image,
    all jointly through ``kornia.augmentation``. Edge targets are computed after augmentation,
    so they always match the labels.

    Args:
        device: where the work runs.
        size: output side in pixels.
        augment: apply the random augmentations to training batches.
        flip, scale, color_jitter: augmentation settings (scale is the crop-area range).
        normalize: ImageNet mean/std normalisation of the image.
        edge_thickness: see :func:`label_edges`.
        depth_edges: > 0 adds depth discontinuities to the edge targets (see :func:`depth_edges`).
    """

    def __init__(self, device: torch.device, size: int, augment: bool = True, flip: bool = True,
                 scale: tuple[float, float] = (0.6, 1.0), color_jitter: float = 0.2,
                 normalize: bool = True, edge_thickness: int = 1, depth_edges: float = 0.0,
                 channels_last: bool = False) -> None:
        self.device = device
        self.normalize = normalize
        self.edge_thickness = edge_thickness
        self.depth_edges = depth_edges
        self.channels_last = channels_last
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.augmentation = self._build_augmentation(size, flip, scale, color_jitter) if augment else None

    @staticmethod
    def _build_augmentation(size: int, flip: bool, scale: tuple[float, float],
                            jitter: float) -> K.AugmentationSequential | None:
        ops: list[K.AugmentationBase2D] = []
        if flip:
            ops.append(K.RandomHorizontalFlip())
        if scale[0] < 1.0:
            ops.append(K.RandomResizedCrop((size, size), scale=(scale[0], scale[1]), ratio=(1.0, 1.0)))
        if jitter > 0:
            ops.append(K.ColorJiggle(jitter, jitter, jitter, jitter / 10, p=0.8))
        if not ops:
            return None
        return K.AugmentationSequential(*ops, data_keys=["input", "mask", "mask"])

    def __call__(self, raw: dict[str, Tensor], train: bool) -> dict[str, Tensor]:
        dev = self.device
        image = raw["image"].to(dev, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        depth = raw["depth"].to(dev, non_blocking=True).unsqueeze(1).float()
        seg = raw["seg"].to(dev, non_blocking=True).long().unsqueeze(1)
        if train and self.augmentation is not None:
            image, depth, seg_f = self.augmentation(image, depth, seg.float())
            seg = seg_f.round().long()
            image = image.clamp_(0.0, 1.0)
        edge = label_edges(seg, self.edge_thickness)
        if self.depth_edges > 0:
            edge = torch.maximum(edge, depth_edges(depth, self.depth_edges))
        if self.normalize:
            image = (image - self.mean) / self.std
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return {"image": image, "depth": depth, "seg": seg.squeeze(1), "edge": edge,
                "index": raw["index"]}
