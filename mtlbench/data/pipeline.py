"""Per-batch work on the training device: augmentation, normalisation, edge targets.

On a GPU the CPU only slices arrays; every per-pixel step runs here, batched. A training step at
these sizes is bound by kernel launches and host syncs, not by arithmetic, so the augmentation is
a fixed sequence of whole-batch tensor ops with the per-image random parameters as tensors: no
loop over images, no branch on a tensor's value, nothing read back to the host.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from kornia.color import hsv_to_rgb, rgb_to_hsv
from kornia.enhance import adjust_brightness, adjust_hue_raw, adjust_saturation_raw
from kornia.filters import sobel
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

JITTER_P = 0.8  # probability that an image gets colour jitter (kornia's ColorJiggle p, as before)
_DRAWS = 9  # uniforms per image: flip, crop area, crop x, crop y, jitter gate, 4 jitter factors


def depth_edges(depth: Tensor, threshold: float) -> Tensor:
    """Depth discontinuities (B×1×H×W metres → {0, 1}): the magnitude of kornia's normalised
    Sobel of log depth above ``threshold``, where the whole 3×3 neighbourhood has valid depth.
    A step by a depth ratio r gives ln(r)/2 on both sides (0.35 for r = 2)."""
    valid = depth > 0
    grad = sobel(torch.log(depth.clamp_min(1e-3)))
    whole = -F.max_pool2d(-valid.float(), 3, stride=1, padding=1) > 0.5
    return ((grad > threshold) & whole).float()


EDGE_TARGETS = ("both_sides", "one_side")


def dilate(edges: Tensor, thickness: int) -> Tensor:
    """``edges`` (B×1×H×W {0, 1}) grown by ``thickness − 1`` pixels (a square)."""
    if thickness <= 1:
        return edges
    k = 2 * (thickness - 1) + 1
    return (F.max_pool2d(edges.float(), k, stride=1, padding=k // 2) > 0).float()


def label_edges(seg: Tensor, thickness: int = 1) -> Tensor:
    """Edge targets from label boundaries (B×1×H×W labels → B×1×H×W float {0, 1}).

    A pixel is an edge where its 3×3 neighbourhood holds another label (both sides of a
    boundary; the image border is replicated, so it is no edge); ``thickness`` > 1 dilates that
    by ``thickness − 1`` pixels. This is the support of the label map's Sobel response, made
    exact: Sobel itself cancels to zero on 1-pixel lines and isolated pixels.
    """
    padded = F.pad(seg.float(), (1, 1, 1, 1), mode="replicate")
    edges = F.max_pool2d(padded, 3, stride=1) != -F.max_pool2d(-padded, 3, stride=1)
    return dilate(edges.float(), thickness)


def boundary_map(seg: Tensor) -> Tensor:
    """One-pixel label boundaries, as BSDS's ``seg2bmap`` draws them (B×1×H×W → float {0, 1}).

    A pixel is a boundary where its label differs from its right, lower or lower-right
    neighbour; the last row compares only to the right, the last column only downwards, and the
    bottom-right pixel is never one. So each label change is marked on one side only, the
    ground truth published edge scores are computed against. Ignored labels (255) are labels
    like any other here: an unlabelled region's outline is a boundary.
    """
    s = seg
    b = torch.zeros(s.shape, dtype=torch.bool, device=s.device)
    inner = b[..., :-1, :-1]
    inner |= s[..., :-1, :-1] != s[..., :-1, 1:]
    inner |= s[..., :-1, :-1] != s[..., 1:, :-1]
    inner |= s[..., :-1, :-1] != s[..., 1:, 1:]
    b[..., -1, :-1] = s[..., -1, :-1] != s[..., -1, 1:]
    b[..., :-1, -1] = s[..., :-1, -1] != s[..., 1:, -1]
    return b.float()


class AugmentParams(NamedTuple):
    """The random augmentation of a batch, one row per image, as small CPU tensors.

    Kept apart from the pixels so that a rank of a distributed run can draw the parameters of the
    whole global batch and apply only its own rows, and so that tests can set them by hand.

    Attributes:
        flip: (n,) bool, mirror the output left-right.
        box: (n, 4) float, the crop as x0, y0, width, height in input pixels (the whole frame when
            cropping is off).
        color: (n, 4) float, brightness, contrast, saturation and hue factors; (1, 1, 1, 0) is
            the identity (up to float rounding of the HSV round trip).
    """

    flip: Tensor
    box: Tensor
    color: Tensor

    def rows(self, start: int, stop: int) -> AugmentParams:
        return AugmentParams(self.flip[start:stop], self.box[start:stop], self.color[start:stop])


class BatchPipeline:
    """Turns raw batches from :meth:`DenseDataset.batch` into model-ready tensors.

    Training batches get a random horizontal flip (p = 0.5), a random square crop resized to
    ``size`` × ``size`` (area fraction uniform in ``scale``, position uniform) and colour jitter
    (p = 0.8). Flip and crop are one per-image axis-aligned affine through ``grid_sample``: image
    bilinear, depth and labels nearest, so invalid depth (0) never blends into valid depth and
    labels stay labels. The crop box is resampled as if cut out and resized (sampling clamped to
    the box), like ``F.interpolate(..., align_corners=False)`` of the slice. Without a crop, the
    flip is an exact ``torch.flip``.

    Colour jitter has the semantics of kornia's ``ColorJiggle(j, j, j, j / 10)``: brightness,
    contrast and saturation factors uniform in [1 − j, 1 + j], hue shift uniform in
    [−j / 10, j / 10] turns, through kornia's functional ops (brightness additive, contrast
    multiplicative, saturation and hue in HSV), clamped to [0, 1]. ColorJiggle permutes the four
    steps per call; here the order is fixed (brightness, contrast, saturation, hue) for speed and
    determinism, and images not jittered get identity factors rather than being selected out.

    Edge targets are computed after augmentation, so they always match the labels.

    Args:
        device: where the work runs.
        size: output side in pixels of a cropped training batch.
        augment: apply the random augmentations to training batches.
        flip, scale, color_jitter: augmentation settings (scale is the crop-area range; a lower
            bound of 1 turns cropping off).
        normalize: ImageNet mean/std normalisation of the image.
        edge_thickness: see :func:`label_edges`.
        edge_targets: ``"both_sides"``: :func:`label_edges` (both sides of each label change);
            ``"one_side"``: :func:`boundary_map` (BSDS's one-pixel boundaries, what edges are
            scored against), dilated like ``label_edges`` when ``edge_thickness`` > 1. A dataset
            with its own edge maps (NYUD-MT) trains on those instead.
        depth_edges: > 0 adds depth discontinuities to the edge targets (see :func:`depth_edges`).
        depth_zoom: divide depth by the zoom of the random crop (frame side / crop side), as
            MTI-Net's code does when it scales: a crop shown larger looks nearer.
        channels_last: return the image in channels-last memory format.
    """

    def __init__(self, device: torch.device, size: int, augment: bool = True, flip: bool = True,
                 scale: tuple[float, float] = (0.6, 1.0), color_jitter: float = 0.2,
                 normalize: bool = True, edge_thickness: int = 1, edge_targets: str = "both_sides",
                 depth_edges: float = 0.0, depth_zoom: bool = False, channels_last: bool = False) -> None:
        if edge_targets not in EDGE_TARGETS:
            raise ValueError(f"edge_targets {edge_targets!r}: choose from {', '.join(EDGE_TARGETS)}")
        self.device = device
        self.size = size
        self.flip = flip
        self.scale = (float(scale[0]), float(scale[1]))
        self.crop = scale[0] < 1.0
        self.color_jitter = color_jitter
        self.augment = augment and (flip or self.crop or color_jitter > 0)
        self.normalize = normalize
        self.edge_thickness = edge_thickness
        self.edge_targets = edge_targets
        self.depth_edges = depth_edges
        self.depth_zoom = depth_zoom
        self.channels_last = channels_last
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        # output pixel centres in grid_sample's [-1, 1] coordinates (align_corners=False)
        self._centres = (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1
        j = color_jitter
        self._color_low = torch.tensor([max(0.0, 1 - j)] * 3 + [-j / 10])
        self._color_width = torch.tensor([1 + j - max(0.0, 1 - j)] * 3 + [j / 5])
        self._color_identity = torch.tensor([1.0, 1.0, 1.0, 0.0])
        # factors as the device ops take them: brightness as a shift (kornia's ColorJiggle passes
        # factor − 1 to adjust_brightness), hue in radians rather than turns
        self._color_scale = torch.tensor([1.0, 1.0, 1.0, 2 * math.pi])
        self._color_shift = torch.tensor([-1.0, 0.0, 0.0, 0.0])

    def __call__(self, raw: dict[str, Tensor], train: bool, *, seed: int | None = None,
                 span: tuple[int, int] | None = None) -> dict[str, Tensor]:
        """Model-ready tensors of ``raw``; random augmentation only where ``train``.

        The parameters are drawn for ``span[1]`` images (default: this batch) from torch's
        default CPU generator, or where ``seed`` is given from a fresh generator seeded with it,
        and rows ``span[0]`` to ``span[0] + n`` are applied to this batch of n: with one seed per
        global batch, ranks that each pass their slice and its span reproduce one process exactly.
        """
        params = None
        if train and self.augment:
            n, height, width = raw["image"].shape[:3]
            start, total = span if span is not None else (0, n)
            if start < 0 or start + n > total:
                raise ValueError(f"span {span} does not hold a batch of {n} images")
            generator = None if seed is None else torch.Generator().manual_seed(seed)
            params = self.sample_params(total, height, width, generator).rows(start, start + n)
        return self.apply(raw, params)

    def sample_params(self, n: int, height: int, width: int,
                      generator: torch.Generator | None = None) -> AugmentParams:
        """Random parameters for ``n`` frames of ``height`` × ``width``, on the CPU.

        One ``torch.rand(n, 9)`` draw whatever the settings, so a row depends only on the
        generator's state and its position, never on another row or on what is turned off.
        """
        u = torch.rand(n, _DRAWS, generator=generator)
        flip = u[:, 0] < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        if self.crop:
            low, high = self.scale[0] * height * width, self.scale[1] * height * width  # areas
            side = (u[:, 1:2] * (high - low) + low).sqrt_().round_().clamp_(1, min(height, width))
            room = torch.tensor([width + 1.0, height + 1.0]) - side  # number of valid offsets per axis
            # u < 1 makes u * room < room, but float rounding can reach room itself
            offset = torch.minimum((u[:, 2:4] * room).floor_(), room - 1)
            box = torch.cat([offset, side, side], 1)
        else:
            box = torch.tensor([0.0, 0.0, width, height]).expand(n, 4)
        if self.color_jitter > 0:
            color = torch.where(u[:, 4:5] < JITTER_P, self._color_low + self._color_width * u[:, 5:9],
                                self._color_identity)
        else:
            color = self._color_identity.expand(n, 4)
        return AugmentParams(flip, box, color)

    def apply(self, raw: dict[str, Tensor], params: AugmentParams | None) -> dict[str, Tensor]:
        """:meth:`__call__` with the parameters given (``None``: no augmentation).

        The parameters only act where the settings turn that augmentation on.
        """
        dev = self.device
        image = raw["image"].to(dev, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        # per-pixel targets stacked as channels, so one resampling moves them all alike
        maps = [raw["depth"].to(dev, non_blocking=True).unsqueeze(1).float(),
                raw["seg"].to(dev, non_blocking=True).unsqueeze(1).float()]
        if "normals" in raw:
            maps.append(raw["normals"].to(dev, non_blocking=True).permute(0, 3, 1, 2).float())
        if "edge" in raw:
            maps.append(raw["edge"].to(dev, non_blocking=True).unsqueeze(1).float())
        stacked = torch.cat(maps, 1)
        if params is not None:
            image, stacked = self._augment(image, stacked, params, "normals" in raw)
        depth, seg = stacked[:, :1], stacked[:, 1:2].long()
        out = {"image": image, "depth": depth, "seg": seg.squeeze(1), "index": raw["index"]}
        if "normals" in raw:
            out["normals"] = stacked[:, 2:5]
        if "edge" in raw:
            edge = stacked[:, -1:]
        elif self.edge_targets == "one_side":
            edge = dilate(boundary_map(seg), self.edge_thickness)
        else:
            edge = label_edges(seg, self.edge_thickness)
        if self.depth_edges > 0:
            edge = torch.maximum(edge, depth_edges(depth, self.depth_edges))
        out["edge"] = edge
        if self.normalize:
            image = (image - self.mean) / self.std
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        out["image"] = image
        return out

    def _augment(self, image: Tensor, maps: Tensor, params: AugmentParams,
                 normals: bool) -> tuple[Tensor, Tensor]:
        """Image and stacked target maps (depth, labels, then normals' x, y, z when ``normals``,
        then any other map) augmented alike."""
        n, _, height, width = image.shape
        p = self._device_params(params, height, width).view(n, -1, 1, 1)
        if self.crop:
            s = self.size
            # x and y of the sampling grid separately (a crop and a flip keep the axes apart),
            # each clamped to the box's outermost pixel centres so nothing outside it blends in
            gx = torch.addcmul(p[:, 2], p[:, 0], self._centres.view(1, 1, s)).clamp_(p[:, 4], p[:, 6])
            gy = torch.addcmul(p[:, 3], p[:, 1], self._centres.view(1, s, 1)).clamp_(p[:, 5], p[:, 7])
            grid = torch.stack([gx.expand(n, s, s), gy.expand(n, s, s)], -1)
            image = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
            # nearest copies values, so depths, labels (255 too) and normals come through exactly
            maps = F.grid_sample(maps, grid, mode="nearest", padding_mode="border", align_corners=False)
            if self.depth_zoom:
                maps = torch.cat([maps[:, :1] * p[:, 13:14], maps[:, 1:]], 1)
        elif self.flip:
            flip = p[:, 8:9] > 0.5
            image = torch.where(flip, image.flip(-1), image)
            maps = torch.where(flip, maps.flip(-1), maps)
        if normals and self.flip:  # a mirrored surface turns the other way: x of the normal flips
            maps = torch.cat([maps[:, :2], maps[:, 2:3] * (1 - 2 * p[:, 8:9]), maps[:, 3:]], 1)
        if self.color_jitter > 0:
            c = p[:, 9:13]
            image = adjust_brightness(image, c[:, 0:1])
            # kornia's adjust_contrast, less its factor check, which reads the value back on a CPU
            image = (image * c[:, 1:2]).clamp_(0.0, 1.0)
            # saturation then hue, both in HSV: one conversion there and back for the two
            hsv = adjust_hue_raw(adjust_saturation_raw(rgb_to_hsv(image), c[:, 2:3]), c[:, 3:4])
            image = hsv_to_rgb(hsv).clamp_(0.0, 1.0)
        return image, maps

    def _device_params(self, params: AugmentParams, height: int, width: int) -> Tensor:
        """The parameters as the per-image numbers the device ops use, moved there in one copy.

        Columns: x and y scale, x and y centre of the output-to-input affine in grid_sample's
        coordinates (0-3; a flip negates the x scale), x and y lower then upper clamp bounds
        (4-7), flip (8), brightness shift, contrast, saturation, hue in radians (9-12), the depth
        factor of the crop's zoom, crop side / frame height (13). Each
        column is plain element-wise CPU arithmetic, so a row never depends on another row.
        """
        pixel = torch.tensor([1.0 / width, 1.0 / height])  # half a pixel in grid_sample units
        origin, extent = params.box[:, :2], params.box[:, 2:]
        flip = params.flip.float()[:, None]
        scale = extent * pixel
        centre = (origin * 2 + extent) * pixel - 1
        reach = scale - pixel  # centre to the outermost pixel centre of the box
        signed = torch.cat([scale[:, :1] * (1 - 2 * flip), scale[:, 1:]], 1)
        color = params.color * self._color_scale + self._color_shift
        zoom = extent[:, 1:] / height
        packed = torch.cat([signed, centre, centre - reach, centre + reach, flip, color, zoom], 1)
        return packed.to(self.device, non_blocking=True)
