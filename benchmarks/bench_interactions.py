"""What each registered interaction (built-in and installed plugins) adds to the seed's model:
parameters and FLOPs of `mtinet` with that module on its two guidance edges, against `hps` (the same
network without guidance), in one run on one input.

    python benchmarks/bench_interactions.py                         # the quick preset's model: resnet18, width 64, 128²
    python benchmarks/bench_interactions.py --backbone resnet50 --width 128 --size 256 --repeats 5

FLOPs are torch.utils.flop_counter's (convolutions and matrix products, 2 per multiply-add) on
one inference forward pass, per image. ``--repeats N`` adds the median forward latency of N
passes after 2 warm-up passes (a timing: rerun it on a quiet machine before comparing).
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=0, help="timed forward passes (0: no timing)")
    a = ap.parse_args()

    from mtlbench.cost import count_flops, count_parameters, median_latency_s
    from mtlbench.models.backbones import build_backbone
    from mtlbench.registry import INTERACTIONS, MODELS
    from mtlbench.tasks import DatasetInfo, build_tasks

    tasks = build_tasks(("depth", "seg", "edge"), DatasetInfo())
    x = torch.randn(a.batch_size, 3, a.size, a.size)

    def build(model: str, **options: object) -> torch.nn.Module:
        torch.manual_seed(0)
        return MODELS.build(model, tasks, build_backbone(a.backbone, a.width), **options).eval()

    base = build("hps")
    p0, f0 = count_parameters(base), count_flops(base, x) / a.batch_size
    print(f"mtinet (seg→depth, edge→depth) on {a.backbone}, width {a.width}, {a.size}², against hps: "
          f"{p0 / 1e6:.3f} M parameters, {f0 / 1e9:.3f} GFLOP per image")
    head = "| interaction | source | + parameters | + MFLOP/img |" + (" ms/img |" if a.repeats else "")
    print("\n" + head + "\n|---|---|---:|---:|" + ("---:|" if a.repeats else ""))
    for entry in INTERACTIONS.entries():
        model = build("mtinet", interaction=entry.name)
        params, flops = count_parameters(model) - p0, count_flops(model, x) / a.batch_size - f0
        row = f"| {entry.name} | {entry.source} | {params:,} | {flops / 1e6:.2f} |"
        if a.repeats:
            row += f" {1e3 * median_latency_s(model, x, a.repeats) / a.batch_size:.1f} |"
        print(row)


if __name__ == "__main__":
    main()
