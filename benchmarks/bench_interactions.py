"""What each registered interaction (built-in and installed plugins) adds to the model of
*Beneath the Surface*: parameters, FLOPs and training-step time of `mtinet` with that module on
its two guidance edges, against `hps` (the same network without guidance), measured in one run.

    python benchmarks/bench_interactions.py                         # the quick preset's model: resnet18, width 64, 128²
    python benchmarks/bench_interactions.py --backbone resnet50 --width 128 --size 256 --steps 5

FLOPs are torch.utils.flop_counter's (convolutions and matrix products, 2 per multiply-add) on
one inference forward pass, per image. The step time is the median of ``--steps`` training steps
(forward, the sum of the outputs' mean squares as the loss, backward, Adam) at ``--batch-size``
after one warm-up step, taken in rounds that visit every model once, so that a machine whose
speed drifts slows every model alike; ``× hps`` is that median over hps's. ``--repeats N`` adds
the median inference latency of N forward passes.
"""

from __future__ import annotations

import argparse
import copy

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16, help="the quick preset's")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per model (0: no step timing)")
    ap.add_argument("--repeats", type=int, default=0, help="timed forward passes (0: no latency)")
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

    models = {"hps": build("hps")} | {e.name: build("mtinet", interaction=e.name) for e in INTERACTIONS.entries()}
    steps = step_times(models, x, a.steps) if a.steps else {}
    base = models["hps"]
    p0, f0 = count_parameters(base), count_flops(base, x) / a.batch_size
    print(f"mtinet (seg→depth, edge→depth) on {a.backbone}, width {a.width}, {a.size}², batch {a.batch_size}, "
          f"{torch.get_num_threads()} threads, against hps: {p0 / 1e6:.3f} M parameters, {f0 / 1e9:.3f} GFLOP per "
          f"image" + (f", {1e3 * steps['hps']:.0f} ms per training step" if steps else ""))
    head = "| interaction | source | + parameters | + MFLOP/img |"
    head += " step ms | × hps |" if steps else ""
    head += " ms/img |" if a.repeats else ""
    print("\n" + head + "\n|---|---|---:|---:|" + ("---:|---:|" if steps else "") + ("---:|" if a.repeats else ""))
    for entry in INTERACTIONS.entries():
        model = models[entry.name]
        params, flops = count_parameters(model) - p0, count_flops(model, x) / a.batch_size - f0
        row = f"| {entry.name} | {entry.source} | {params:,} | {flops / 1e6:.2f} |"
        if steps:
            row += f" {1e3 * steps[entry.name]:.0f} | ×{steps[entry.name] / steps['hps']:.3f} |"
        if a.repeats:
            row += f" {1e3 * median_latency_s(model, x, a.repeats) / a.batch_size:.1f} |"
        print(row)


def step_times(models: dict[str, torch.nn.Module], x: torch.Tensor, steps: int) -> dict[str, float]:
    """Median seconds of one training step per model, timed in rounds over all models."""
    import statistics
    import time

    def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        out = model(x)
        loss = sum(out[t].float().square().mean() for t in ("depth", "seg", "edge"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()

    trained = {name: copy.deepcopy(m).train() for name, m in models.items()}  # the costed models stay as built
    optimizers = {name: torch.optim.Adam(m.parameters(), 1e-3) for name, m in trained.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(steps + 1):  # round 0 warms up
        for name, m in trained.items():
            t0 = time.perf_counter()
            step(m, optimizers[name])
            if r:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}

if __name__ == "__main__":
    main()
