"""Time of ODS/OIS/AP edge evaluation (NMS + tolerance matching + scores) on 2 CPU threads.

654 synthetic 256×256 images (the size of the NYUv2 test split): ground-truth edges are the
boundaries of overlapping random rectangles, predictions are those edges blurred and partly
missed, plus smooth clutter and noise. They go through ``EdgeMetrics`` in batches of 16; only
``update`` and ``compute`` are timed. Target: at most 60 s.

``--exact`` also times ``matching="exact"`` (BSDS one-to-one matching with per-threshold thinning,
``mtlbench.metrics.bsds``) on the same images, ``--workers`` processes (or threads with
``--pool thread``), next to the fast mode timed again on those images. ``--exact-images N`` times it
on the first N images only and extrapolates to ``--images`` (printed as such). Target for 654
images at 256×256 on 2 cores: at most 180 s.

    python benchmarks/bench_ods.py
    python benchmarks/bench_ods.py --exact --exact-images 64
    python benchmarks/bench_ods.py --exact --size 480x640 --exact-images 8
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

TARGET_S = 60.0
EXACT_TARGET_S = 180.0  # 654 images at 256×256 on 2 cores


def synthetic_batch(gen: torch.Generator, b: int, size: int | tuple[int, int],
                    rects: int = 10) -> tuple[Tensor, Tensor]:
    """Ground-truth edges from random rectangles and a blurred, noisy prediction of them.

    Args:
        gen: random generator (the data is reproducible).
        b: images in the batch.
        size: image side in pixels, or (height, width).
        rects: rectangles per image.

    Returns:
        (pred, edge), both B×1×H×W float in [0, 1].
    """
    h, w = (size, size) if isinstance(size, int) else size
    if h == w:  # the stream the fast-mode numbers in docs/benchmarks.md were measured on
        corners = torch.randint(0, h, (b, rects, 4), generator=gen)
    else:
        corners = torch.cat([torch.randint(0, h, (b, rects, 2), generator=gen),
                             torch.randint(0, w, (b, rects, 2), generator=gen)], -1)
    y0, y1 = corners[..., 0:2].sort(-1).values.unbind(-1)
    x0, x1 = corners[..., 2:4].sort(-1).values.unbind(-1)
    ys = torch.arange(h).view(1, 1, h, 1)
    xs = torch.arange(w).view(1, 1, 1, w)
    inside = ((ys >= y0[..., None, None]) & (ys <= y1[..., None, None])
              & (xs >= x0[..., None, None]) & (xs <= x1[..., None, None]))
    # a bit per rectangle: a region's label is the set of rectangles covering it
    label = (inside.long() << torch.arange(rects).view(1, rects, 1, 1)).sum(1)
    edge = torch.zeros(b, h, w, dtype=torch.bool)
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
        return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)

    kept = (smooth_field(8) > 0.25).float()
    confidence = 0.5 + 0.5 * torch.rand(b, 1, 1, 1, generator=gen)
    clutter = 0.7 * smooth_field(24) ** 4
    noise = 0.1 * torch.rand(b, 1, h, w, generator=gen)
    pred = (confidence * blurred * kept + clutter + noise).clamp(0, 1)
    return pred, edge


def _size(text: str) -> tuple[int, int]:
    """``256`` or ``480x640`` (height x width)."""
    parts = [int(p) for p in text.lower().split("x")]
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}")
    return parts[0], parts[1]


def _timed(metric_args: dict[str, Any], batches: list[tuple[Tensor, Tensor]]) -> tuple[float, dict[str, float]]:
    """Seconds of ``update`` over the batches plus ``compute``, and the scores."""
    from mtlbench.metrics import EdgeMetrics

    metric = EdgeMetrics(**metric_args)
    start = time.perf_counter()
    for pred, edge in batches:
        metric.update(pred, {"edge": edge})
    scores = metric.compute()
    return time.perf_counter() - start, scores


def _exact_threads(batches: list[tuple[Tensor, Tensor]], workers: int) -> tuple[float, dict[str, float]]:
    """Exact mode with the images of each batch spread over threads (for comparison with
    processes: most of the work holds the GIL)."""
    from mtlbench.metrics.bsds import exact_counts
    from mtlbench.metrics.edge import ods_ois_ap, thin

    counts = []
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for pred, edge in batches:
            prob = thin(pred[:, 0].float()).numpy()
            gt = (edge[:, 0] > 0.5).numpy()
            counts += list(pool.map(exact_counts, prob, gt))
    scores = ods_ois_ap(torch.from_numpy(np.stack(counts)))
    seconds = time.perf_counter() - start
    from mtlbench.metrics import EdgeMetrics

    return seconds, {k: scores[k] for k in EdgeMetrics.names}


def _line(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if not math.isnan(v))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=654)
    ap.add_argument("--size", type=_size, default=(256, 256), help="N or HxW (e.g. 480x640)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exact", action="store_true", help="also time matching='exact'")
    ap.add_argument("--exact-images", type=int, default=0,
                    help="time the exact mode on the first N images and extrapolate (0: all)")
    ap.add_argument("--workers", type=int, default=2, help="exact mode: processes (or threads)")
    ap.add_argument("--pool", choices=("process", "thread"), default="process")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from mtlbench.metrics import EdgeMetrics

    h, w = args.size
    gen = torch.Generator().manual_seed(0)
    batches = []
    left = args.images
    while left > 0:
        n = min(args.batch_size, left)
        batches.append(synthetic_batch(gen, n, (h, w)))
        left -= n

    warm = EdgeMetrics()  # first-call costs (allocator, kernels) out of the timing
    warm.update(*_as_update(batches[0]))
    warm.compute()

    seconds, scores = _timed({}, batches)
    per_image_ms = 1e3 * seconds / args.images
    print(f"ODS/OIS/AP over {args.images} images {h}x{w}: {seconds:.1f} s "
          f"(target <= {TARGET_S:.0f} s, ratio {seconds / TARGET_S:.2f}); "
          f"{args.images / seconds:.0f} images/s, {per_image_ms:.1f} ms/image, {args.threads} threads")
    print("  " + _line(scores))
    if not args.exact:
        return

    n_exact = min(args.exact_images or args.images, args.images)
    subset = _first(batches, n_exact)
    load = os.getloadavg()[0]  # other processes on the cores skew the parallel timing: printed
    fast_s, fast_scores = _timed({}, subset)
    if args.pool == "thread":
        exact_s, exact_scores = _exact_threads(subset, args.workers)
    else:
        if args.workers > 1:  # start the worker processes outside the timing
            _timed({"matching": "exact", "workers": args.workers}, [_first(batches, args.workers)[0]])
        exact_s, exact_scores = _timed({"matching": "exact", "workers": args.workers}, subset)
    how = f"{args.workers} {args.pool}{'es' if args.pool == 'process' else 's'}" if args.workers > 1 else "serial"
    print(f"exact matching over {n_exact} images {h}x{w}, {how}: {exact_s:.1f} s, {exact_s / n_exact:.2f} s/image, "
          f"{exact_s / fast_s:.0f}x the fast mode on the same images ({fast_s:.2f} s); "
          f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    if n_exact < args.images:
        total = exact_s * args.images / n_exact
        print(f"  extrapolated to {args.images} images (not measured): {total:.0f} s = {total / 60:.1f} min")
    else:
        total = exact_s
    if (h, w) == (256, 256) and args.images == 654:
        print(f"  target <= {EXACT_TARGET_S:.0f} s for 654 images at 256x256 on 2 cores: "
              f"ratio {total / EXACT_TARGET_S:.2f}")
    print("  exact: " + _line(exact_scores))
    print("  fast:  " + _line(fast_scores))


def _first(batches: list[tuple[Tensor, Tensor]], n: int) -> list[tuple[Tensor, Tensor]]:
    """The first ``n`` images, in the same batches."""
    out = []
    for pred, edge in batches:
        if n <= 0:
            break
        out.append((pred[:n], edge[:n]))
        n -= pred.shape[0]
    return out


def _as_update(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    pred, edge = batch
    return pred, {"edge": edge}


if __name__ == "__main__":
    main()
