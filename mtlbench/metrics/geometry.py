"""Distance transforms and dilations on binary maps, batched in torch.

Edge and boundary metrics only ever need distances up to a small limit (a few pixels), so the
exact Euclidean distance transform is computed by its separable form restricted to that window:
first the distance along each row, then the minimum over row offsets ``dy`` of
``dy² + row_distance²``. This is exact for every distance below the limit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _shifted(x: Tensor, d: int, dim: int, fill: float) -> Tensor:
    """``x`` moved by ``d`` along ``dim`` (out[i] = x[i + d]), padded with ``fill``."""
    if d == 0:
        return x
    n = x.shape[dim]
    pad_shape = list(x.shape)
    pad_shape[dim] = min(abs(d), n)
    pad = x.new_full(pad_shape, fill)
    if abs(d) >= n:
        return pad.expand_as(x) if pad.shape == x.shape else x.new_full(x.shape, fill)
    if d > 0:
        return torch.cat([x.narrow(dim, d, n - d), pad], dim)
    return torch.cat([pad, x.narrow(dim, 0, n + d)], dim)


def truncated_edt(mask: Tensor, limit: float) -> Tensor:
    """Euclidean distance from every pixel to the nearest ``True`` pixel of ``mask`` (…×H×W),
    exact below ``limit`` and clamped to ``limit`` elsewhere (also where ``mask`` is empty)."""
    r = int(math.ceil(limit))
    big = float(limit) ** 2
    inf = torch.full(mask.shape, big, dtype=torch.float32, device=mask.device)
    hits = mask.bool()
    # squared distance along rows, capped at limit²
    row = torch.where(hits, torch.zeros_like(inf), inf)
    for dx in range(1, r + 1):
        cost = float(dx * dx)
        for d in (dx, -dx):
            near = _shifted(hits, d, -1, False)
            row = torch.where(near & (row > cost), torch.full_like(row, cost), row)
    best = row
    for dy in range(1, r + 1):
        cost = float(dy * dy)
        for d in (dy, -dy):
            best = torch.minimum(best, _shifted(row, d, -2, big) + cost)
    return best.clamp(max=big).sqrt()


def disk_offsets(radius: float) -> list[tuple[int, int]]:
    """Integer offsets (dy, dx) with dy² + dx² <= radius²."""
    r = int(math.floor(radius))
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= radius * radius]


def disk_max(x: Tensor, radius: float) -> Tensor:
    """Maximum of ``x`` (B×H×W) over a disk of ``radius`` pixels around each pixel (outside the
    image counts as -inf)."""
    r = int(math.floor(radius))
    if r == 0:
        return x
    padded = F.pad(x[:, None], (r, r, r, r), value=float("-inf"))[:, 0]
    h, w = x.shape[-2:]
    out = torch.full_like(x, float("-inf"))
    for dy, dx in disk_offsets(radius):
        out = torch.maximum(out, padded[:, r + dy:r + dy + h, r + dx:r + dx + w])
    return out
