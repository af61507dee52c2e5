"""Per-batch work on the training device: augmentation, normalisation, derived targets.

On a GPU the CPU only slices arrays; every per-pixel step runs here, batched. A training step at
these sizes is bound by kernel launches and host syncs, not by arithmetic, so the augmentation is
a fixed sequence of whole-batch tensor ops with the per-image random parameters as tensors: no
loop over images, no branch on a tensor's value, nothing read back to the host.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from kornia.color import hsv_to_rgb, rgb_to_hsv
from kornia.enhance import adjust_brightness, adjust_hue_raw, adjust_saturation_raw
from torch import Tensor

from mtlbench.tasks.base import EDGE_TARGET, NORMALS_TARGET, RGBD_TARGETS, VECTOR, Target, Task

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

JITTER_P = 0.8  # probability that an image gets colour jitter (kornia's ColorJiggle p, as before)
_DRAWS = 9  # uniforms per image: flip, crop area, crop x, crop y, jitter gate, 4 jitter factors

# what a pipeline built without a dataset's target list reads: indoor RGB-D frames' targets
DEFAULT_TARGETS: Mapping[str, Target] = {**RGBD_TARGETS, "normals": NORMALS_TARGET, "edge": EDGE_TARGET}


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

    Targets move with the image by their kind (:class:`mtlbench.tasks.base.Target`): every map
    is resampled nearest, so values are copied, never blended; a vector target's x component
    changes sign under a flip; a target marked ``zoom`` is divided by the crop's zoom where
    ``depth_zoom`` asks. Targets a task derives from others (edges from labels) are made after
    augmentation by the task's :meth:`~mtlbench.tasks.base.Task.derive`, so they always match what
    they come from.

    Args:
        device: where the work runs.
        size: output side in pixels of a cropped training batch.
        augment: apply the random augmentations to training batches.
        flip, scale, color_jitter: augmentation settings (scale is the crop-area range; a lower
            bound of 1 turns cropping off).
        normalize: ImageNet mean/std normalisation of the image.
        targets: the kind of each target key raw batches may carry (a dataset's
            ``DatasetInfo.targets``); default: indoor RGB-D frames' depth, seg, normals and edge.
        tasks: the tasks whose derived targets are added to every batch, in order.
        depth_zoom: divide ``zoom`` targets by the zoom of the random crop (frame side / crop
            side), as MTI-Net's code does when it scales: a crop shown larger looks nearer.
        channels_last: return the image in channels-last memory format.
    """

    def __init__(self, device: torch.device, size: int, augment: bool = True, flip: bool = True,
                 scale: tuple[float, float] = (0.6, 1.0), color_jitter: float = 0.2,
                 normalize: bool = True, targets: Mapping[str, Target] | None = None,
                 tasks: Sequence[Task] = (), depth_zoom: bool = False, channels_last: bool = False) -> None:
        self.device = device
        self.size = size
        self.flip = flip
        self.scale = (float(scale[0]), float(scale[1]))
        self.crop = scale[0] < 1.0
        self.color_jitter = color_jitter
        self.augment = augment and (flip or self.crop or color_jitter > 0)
        self.normalize = normalize
        self.targets = dict(DEFAULT_TARGETS if targets is None else targets)
        self.tasks = tuple(tasks)
        self._flags: dict[tuple[tuple[str, ...], tuple[int, ...]], tuple[Tensor | None, Tensor | None]] = {}
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
        keys = [k for k in raw if k not in ("image", "index")]
        unknown = [k for k in keys if k not in self.targets]
        if unknown:
            raise ValueError(f"batch keys {', '.join(unknown)} have no declared target kind (DatasetInfo.targets)")
        # per-pixel targets stacked as channels, so one resampling moves them all alike
        maps = [self.targets[k].channels_of(raw[k].to(dev, non_blocking=True)) for k in keys]
        widths = [m.shape[1] for m in maps]
        out: dict[str, Tensor] = {"image": image, "index": raw["index"]}
        if params is not None:
            # a frame with no stored target still crops and flips through one blank map
            stacked = torch.cat(maps, 1) if maps else image[:, :1] * 0
            image, stacked = self._augment(image, stacked, params, self._channel_flags(tuple(keys), tuple(widths)))
            maps = list(stacked.split(widths, 1)) if maps else []
        for k, part in zip(keys, maps):
            out[k] = self.targets[k].from_channels(part)
        for task in self.tasks:
            task.derive(out)
        if self.normalize:
            image = (image - self.mean) / self.std
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        out["image"] = image
        return out

    def _channel_flags(self, keys: tuple[str, ...],
                       widths: tuple[int, ...]) -> tuple[Tensor | None, Tensor | None]:
        """Per stacked channel, on the device: whether a flip negates it (a vector's x) and
        whether the crop's zoom divides it (computed once per batch layout)."""
        if (keys, widths) not in self._flags:
            sign, zoom = [], []
            for k, w in zip(keys, widths):
                t = self.targets[k]
                sign += [t.kind == VECTOR] + [False] * (w - 1)
                zoom += [t.zoom] * w

            def mask(bits: list[bool]) -> Tensor | None:
                return torch.tensor(bits, device=self.device).view(1, -1, 1, 1) if any(bits) else None

            self._flags[keys, widths] = (mask(sign), mask(zoom))
        return self._flags[keys, widths]

    def _augment(self, image: Tensor, maps: Tensor, params: AugmentParams,
                 flags: tuple[Tensor | None, Tensor | None]) -> tuple[Tensor, Tensor]:
        """Image and stacked target maps augmented alike; ``flags``: :meth:`_channel_flags`."""
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
            if self.depth_zoom and flags[1] is not None:
                maps = torch.where(flags[1], maps * p[:, 13:14], maps)
        elif self.flip:
            flip = p[:, 8:9] > 0.5
            image = torch.where(flip, image.flip(-1), image)
            maps = torch.where(flip, maps.flip(-1), maps)
        if self.flip and flags[0] is not None:  # a mirrored surface turns the other way: x of a vector flips
            maps = torch.where(flags[0], maps * (1 - 2 * p[:, 8:9]), maps)
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
