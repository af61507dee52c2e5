"""Local windowed cross-attention for mtlbench: every target position attends to the guide in a
k×k window around it, at full resolution (no pooling of keys and values).

The local self-attention of Ramachandran et al., "Stand-Alone Self-Attention in Vision Models",
NeurIPS 2019, with the query from the target task and keys and values from the guiding task
(cross-task), single head per `heads` group. Its cost is H·W·k² per image, linear in the map's
size, where the global attention of *Beneath the Surface* pools keys to a 16×16 grid instead. The
output projection starts at zero (the identity). What differs from the paper: no relative position embeddings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.api import INTERACTIONS, Option, at_least

MTLBENCH_API = "1"


class LocalCrossAttention(nn.Module):
    def __init__(self, channels: int, dim: int = 32, heads: int = 1, window: int = 7) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        if window % 2 == 0:
            raise ValueError(f"window {window} must be odd, so that it is centred on its position")
        self.dim, self.heads, self.window = dim, heads, window
        self.query = nn.Conv2d(channels, dim, 1)
        self.key = nn.Conv2d(channels, dim, 1)
        self.value = nn.Conv2d(channels, dim, 1)
        self.out = nn.Conv2d(dim, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _windows(self, x: Tensor) -> Tensor:
        """B×heads×(H·W)×k²×(dim/heads): each position's k×k neighbourhood (zero-padded)."""
        b, _, h, w = x.shape
        k = self.window
        cols = F.unfold(x, k, padding=k // 2)  # B×(dim·k²)×(H·W)
        return cols.view(b, self.heads, self.dim // self.heads, k * k, h * w).permute(0, 1, 4, 3, 2)

    def attention_maps(self, target: Tensor, source: Tensor) -> Tensor:
        """B×heads×(H·W)×k²: each position's weights over its window."""
        b, _, h, w = target.shape
        q = self.query(target).view(b, self.heads, self.dim // self.heads, h * w).transpose(-1, -2)
        k = self._windows(self.key(source))
        logits = torch.einsum("bnpd,bnpkd->bnpk", q, k) / math.sqrt(self.dim // self.heads)
        return torch.softmax(logits, -1)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        b, _, h, w = target.shape
        attn = self.attention_maps(target, source)
        v = self._windows(self.value(source))
        out = torch.einsum("bnpk,bnpkd->bnpd", attn, v)  # B×heads×(H·W)×(dim/heads)
        return target + self.out(out.transpose(-1, -2).reshape(b, self.dim, h, w))


def local_attention(channels: int, dim: int = 32, heads: int = 1, window: int = 7) -> nn.Module:
    """Local windowed cross-attention (Ramachandran et al., NeurIPS 2019): k×k windows at full resolution."""
    return LocalCrossAttention(channels, dim, heads, window)


def register() -> None:
    """The ``mtlbench.plugins`` entry point: registers ``local_attention`` (importing the module does not)."""
    options = {"dim": Option(32, "query/key width", at_least(1)),
               "heads": Option(1, "attention heads (dim is split between them)", at_least(1)),
               "window": Option(7, "side of the window each position attends to (odd)", at_least(1))}
    INTERACTIONS.register("local_attention", options=options, identity_at_init=True)(local_attention)
