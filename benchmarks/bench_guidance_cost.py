"""What the guided attention of *Beneath the Surface* costs: mtinet against hps (same backbone
and decoders).

Prints parameters, FLOPs (torch.utils.flop_counter), the attention-matrix size per image and
forward latency of both models, measured in one run on the same input.

    python benchmarks/bench_guidance_cost.py                 # resnet50, 256x256, batch 2, CPU
    python benchmarks/bench_guidance_cost.py --size 512 --grid 16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--grid", type=int, default=16, help="side of the pooled key/value grid")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from mtlbench.models.backbones import build_backbone
    from mtlbench.registry import MODELS
    from mtlbench.tasks import DatasetInfo, build_tasks

    tasks = build_tasks(("depth", "seg", "edge"), DatasetInfo())
    x = torch.randn(args.batch_size, 3, args.size, args.size)
    models = {}
    for name in ("hps", "mtinet"):
        torch.manual_seed(0)
        options = {"interaction_options": {"grid": args.grid}} if name == "mtinet" else {}
        models[name] = MODELS.build(name, tasks, build_backbone(args.backbone, args.width), **options).eval()

    stats = {}
    with torch.no_grad():
        for name, model in models.items():
            with FlopCounterMode(display=False) as counter:
                model(x)
            model(x)  # warm-up
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
            stats[name] = (sum(p.numel() for p in model.parameters()), counter.get_total_flops() / args.batch_size,
                           statistics.median(times) / args.batch_size)

    queries = (args.size // 16) ** 2
    keys = min(args.grid, args.size // 16) ** 2
    full_keys = queries
    print(f"{args.backbone} {args.size}x{args.size}, width {args.width}, batch {args.batch_size}, CPU threads "
          f"{torch.get_num_threads()}")
    print(f"attention on the stride-16 grid: {queries} queries x {keys} keys (K/V pooled to {args.grid}x{args.grid}) "
          f"= {queries * keys * 4 / 2**10:.0f} KiB fp32 per image per guidance module "
          f"(unpooled: {queries * full_keys * 4 / 2**10:.0f} KiB)")
    for name, (params, flops, latency) in stats.items():
        print(f"{name:>7}: {params / 1e6:7.2f} M params  {flops / 1e9:7.2f} GFLOP/image  {latency * 1e3:8.1f} ms/image")
    (p0, f0, l0), (p1, f1, l1) = stats["hps"], stats["mtinet"]
    print(f"guidance adds {100 * (p1 - p0) / p0:.2f} % parameters, {100 * (f1 - f0) / f0:.2f} % FLOPs, "
          f"latency ratio mtinet/hps {l1 / l0:.3f}")


if __name__ == "__main__":
    main()
