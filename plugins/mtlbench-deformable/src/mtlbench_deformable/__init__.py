"""Offset-guided sampling for mtlbench: the guide tells where in itself to look.

Deformable convolution (Dai et al., "Deformable Convolutional Networks", ICCV 2017) samples its
input at learnt offsets from the regular grid. Here the offsets (and a modulation mask, as in
DCNv2, Zhu et al. CVPR 2019) are predicted from the target and the guide together, and a 3×3
deformable convolution (torchvision's `deform_conv2d`) samples the guide's features there; the
result is added to the target through a zero-initialised 1×1 conv (the identity at the start).
The offset predictor starts at zero too, so sampling starts on the regular grid.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from mtlbench.api import INTERACTIONS, Option, at_least

MTLBENCH_API = "1"


class DeformableGuidance(nn.Module):
    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"kernel {kernel} must be odd")
        self.kernel = kernel
        self.offsets = nn.Conv2d(2 * channels, 3 * kernel * kernel, 3, padding=1)  # (dy, dx) pairs and a mask
        nn.init.zeros_(self.offsets.weight)
        nn.init.zeros_(self.offsets.bias)
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel, kernel))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        k2 = self.kernel * self.kernel
        pred = self.offsets(torch.cat([target, source], 1))
        offset, mask = pred[:, : 2 * k2], torch.sigmoid(pred[:, 2 * k2:])
        sampled = deform_conv2d(source, offset.to(source.dtype), self.weight.to(source.dtype),
                                padding=self.kernel // 2, mask=mask.to(source.dtype))
        return target + self.out(sampled)


def deformable(channels: int, kernel: int = 3) -> nn.Module:
    """Offset-guided sampling (deformable conv, Dai et al. ICCV 2017; DCNv2 mask): the guide, sampled where it says."""
    return DeformableGuidance(channels, kernel)


def register() -> None:
    """The ``mtlbench.plugins`` entry point: registers ``deformable`` (importing the module does not)."""
    options = {"kernel": Option(3, "side of the deformable kernel (odd)", at_least(1))}
    INTERACTIONS.register("deformable", options=options, identity_at_init=True)(deformable)
