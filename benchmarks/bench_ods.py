"""Time of ODS/OIS/AP edge evaluation (NMS + tolerance matching + scores) on 2 CPU threads.

654 synthetic 256×256 images (the size of the NYUv2 test split): ground-truth edges are the
boundaries of overlapping random rectangles, predictions are those edges blurred and partly
missed, plus smooth clutter and noise. They go through ``EdgeMetrics`` in batches of 16; only
``update`` and ``compute`` are timed. Target: at most 60 s.

    python benchmarks/bench_ods.py
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor

TARGET_S = 60.0


def synthetic_batch(gen: torch.Generator, b: int, size: int, rects: int = 10) -> tuple[Tensor, Tensor]:
    """Ground-truth edges from random rectangles and a blurred, noisy prediction of them.

    Args:
        gen: random generator (the data is reproducible).
        b: images in the batch.
        size: image side in pixels.
        rects: rectangles per image.

    Returns:
        (pred, edge), both B×1×size×size float in [0, 1].
    """
    corners = torch.randint(0, size, (b, rects, 4), generator=gen)
    y0, y1 = corners[..., 0:2].sort(-1).values.unbind(-1)
    x0, x1 = corners[..., 2:4].sort(-1).values.unbind(-1)
    ys = torch.arange(size).view(1, 1, size, 1)
    xs = torch.arange(size).view(1, 1, 1, size)
    inside = ((ys >= y0[..., None, None]) & (ys <= y1[..., None, None])
              & (xs >= x0[..., None, None]) & (xs <= x1[..., None, None]))
    # a bit per rectangle: a region's label is the set of rectangles covering it
    label = (inside.long() << torch.arange(rects).view(1, rects, 1, 1)).sum(1)
    edge = torch.zeros(b, size, size, dtype=torch.bool)
    edge[:, :, :-1] |= label[:, :, :-1] != label[:, :, 1:]
    edge[:, :-1, :] |= label[:, :-1, :] != label[:, 1:, :]
    edge = edge[:, None].float()

    sigma = 1.5
    t = torch.arange(-4, 5, dtype=torch.float32)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = k / k.sum()
    blurred = F.conv2d(F.conv2d(edge, k.view(1, 1, 1, -1), padding=(0, 4)), k.view(1, 1, -1, 1), padding=(4, 0))
    blurred = blurred / blurred.amax((2, 3), keepdim=True).clamp(min=1e-6)
    # missed stretches, smooth clutter (false ridges after NMS) and pixel noise
    def smooth_field(cells: int) -> Tensor:
        coarse = torch.rand(b, 1, cells, cells, generator=gen)
        return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    kept = (smooth_field(8) > 0.25).float()
    confidence = 0.5 + 0.5 * torch.rand(b, 1, 1, 1, generator=gen)
    clutter = 0.7 * smooth_field(24) ** 4
    noise = 0.1 * torch.rand(b, 1, size, size, generator=gen)
    pred = (confidence * blurred * kept + clutter + noise).clamp(0, 1)
    return pred, edge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=654)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from mtlbench.metrics import EdgeMetrics

    gen = torch.Generator().manual_seed(0)
    batches = []
    left = args.images
    while left > 0:
        n = min(args.batch_size, left)
        batches.append(synthetic_batch(gen, n, args.size))
        left -= n

    warm = EdgeMetrics()  # first-call costs (allocator, kernels) out of the timing
    warm.update(*_as_update(batches[0]))
    warm.compute()

    metric = EdgeMetrics()
    start = time.perf_counter()
    for pred, edge in batches:
        metric.update(pred, {"edge": edge})
    scores = metric.compute()
    seconds = time.perf_counter() - start

    per_image_ms = 1e3 * seconds / args.images
    print(f"ODS/OIS/AP over {args.images} images {args.size}x{args.size}: {seconds:.1f} s "
          f"(target <= {TARGET_S:.0f} s, ratio {seconds / TARGET_S:.2f}); "
          f"{args.images / seconds:.0f} images/s, {per_image_ms:.1f} ms/image, {args.threads} threads")
    print("  " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if not math.isnan(v)))


def _as_update(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    pred, edge = batch
    return pred, {"edge": edge}


if __name__ == "__main__":
    main()
