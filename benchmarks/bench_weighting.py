"""What each weighting costs: training-step time relative to equal weighting on the same model and
batches, and peak memory, every method measured in one invocation.

    python benchmarks/bench_weighting.py                       # mtinet resnet50 256² batch 8, CPU
    python benchmarks/bench_weighting.py --backbone resnet18 --size 128 --methods fixed pcgrad mgda_ub

Each method runs in its own process (so that peak memory is its own): the model is built from the
same seed, one step warms up, then ``--steps`` steps on the same batches are timed (median). The
step is the trainer's: forward, losses, the method's backward, the optimiser step and the method's
after-step update. Peak memory is the process's peak resident set on CPU
(``ru_maxrss``), ``max_memory_allocated`` on a GPU.

``--gramian`` also times the two ways of getting the tasks' Gramian of the shared parameters:
the T backward passes the gradient-level methods take (autojac) against torchjd's autogram
engine, which never forms the T×P Jacobian.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from mtlbench.config import RunConfig, from_dict
from mtlbench.engine.build import build_run
from mtlbench.engine.feeding import batches
from mtlbench.engine.trainer import task_losses
from mtlbench.models.base import SHARED
from mtlbench.registry import WEIGHTINGS


def config(a: argparse.Namespace, method: str) -> RunConfig:
    return from_dict({"model": {"name": a.model, "backbone": a.backbone},
                      "data": {"name": "synthrooms", "size": a.size, "options": {"frames": max(24, 2 * a.batch)}},
                      "tasks": a.tasks.split(","), "weighting": {"name": method},
                      "train": {"batch_size": a.batch, "device": a.device, "seed": 0}}, RunConfig())


def setup(a: argparse.Namespace, method: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """The run's parts, the model in training mode, and one training batch (the same for every method)."""
    parts = build_run(config(a, method))
    parts.model.train()
    raw = next(batches(parts.dataset_splits().train, a.batch, True, 0, True))
    return parts, parts.pipeline(raw, train=True, seed=0)


def measure(a: argparse.Namespace, method: str) -> dict[str, Any]:
    parts, batch = setup(a, method)
    model, w, device = parts.model, parts.weighting, parts.device
    params = [*model.parameters(), *w.parameters()]
    opt = torch.optim.Adam(params, lr=1e-4)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step() -> None:
        out = model(batch["image"])
        losses = task_losses(parts.losses, out, batch)
        opt.zero_grad(set_to_none=True)
        w.backward(losses, model, out.get(SHARED))
        opt.step()
        if w.updates_after_step:
            def recompute() -> dict[str, torch.Tensor]:
                with torch.no_grad():
                    return task_losses(parts.losses, model(batch["image"]), batch)
            w.after_step(recompute)

    step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"method": method, "step_s": statistics.median(times), "peak_mib": peak / 2 ** 20,
            "level": WEIGHTINGS.entry(method).meta["level"]}


def gramian_routes(a: argparse.Namespace) -> dict[str, float]:
    from torchjd.autogram import Engine

    parts, batch = setup(a, "mgda")
    model = parts.model
    shared = [p for p in model.shared_parameters() if p.requires_grad]

    def losses() -> torch.Tensor:
        found = task_losses(parts.losses, model(batch["image"]), batch)
        return torch.stack([found[t] for t in parts.tasks])

    def autojac() -> torch.Tensor:
        values = losses()
        rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(v, shared, retain_graph=True)]) for v in values]
        jac = torch.stack(rows)
        return jac @ jac.t()

    def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
        fn()
        times, gram = [], None
        for _ in range(a.steps):
            t0 = time.perf_counter()
            gram = fn().detach()
            times.append(time.perf_counter() - t0)
        assert gram is not None
        return statistics.median(times), gram

    out: dict[str, float] = {}
    out["autojac"], reference = timed(autojac)
    # the engine hooks the modules from now on: every later forward must be followed by its Gramian.
    # It takes the shared modules; batch norm mixes the samples and rules out the batch dimension
    # that makes the engine cheap
    mixing = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for top in model.shared_modules()
                 for m in top.modules())
    engine = Engine(*model.shared_modules(), batch_dim=None if mixing else 0)
    out["batch_dim"] = -1.0 if mixing else 0.0
    out["autogram"], gram = timed(lambda: engine.compute_gramian(losses()))
    grams = {"autojac": reference, "autogram": gram}
    out["max_rel_diff"] = float((grams["autojac"] - grams["autogram"]).abs().max() / grams["autojac"].abs().max())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mtinet")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tasks", default="depth,seg,edge")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per method (median)")
    ap.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    ap.add_argument("--gramian", action="store_true", help="also time autojac against torchjd's autogram engine")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # the child process: measure one method, print JSON
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(a, a.one)))
        return
    methods = a.methods or WEIGHTINGS.names()
    if "fixed" in methods:
        methods.remove("fixed")
    methods.insert(0, "fixed")
    args = [a for a in sys.argv[1:] if a != "--gramian"]
    print(f"{a.model} {a.backbone} {a.size}² batch {a.batch}, tasks {a.tasks}, {a.device}, "
          f"{torch.get_num_threads()} threads, median of {a.steps} steps after 1 warm-up")
    results = []
    for method in methods:
        done = subprocess.run([sys.executable, __file__, *args, "--one", method], capture_output=True, text=True)
        if done.returncode != 0:
            why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
            print(f"{method}: failed: {why}")
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"  {method:12s} {r['step_s']:7.2f} s/step  ×{r['step_s'] / results[0]['step_s']:.2f}  "
              f"peak {r['peak_mib']:7.0f} MiB", flush=True)
    print("\n| method | level | step (s) | × equal weighting | peak memory (MiB) |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['method']} | {r['level']} | {r['step_s']:.2f} | {r['step_s'] / results[0]['step_s']:.2f} | "
              f"{r['peak_mib']:.0f} |")
    if a.gramian:
        try:
            g = gramian_routes(a)
        except ValueError as exc:  # what torchjd refuses, said as it says it
            print(f"\nGramian of the shared parameters: torchjd's autogram engine refused this model: {exc}")
            return
        print(f"\nGramian of the shared parameters: T backward passes (autojac) {g['autojac']:.2f} s, torchjd autogram "
              f"engine {g['autogram']:.2f} s (×{g['autogram'] / g['autojac']:.2f}, batch_dim "
              f"{'None: batch norm' if g['batch_dim'] < 0 else 0}); max relative difference {g['max_rel_diff']:.1e}")


if __name__ == "__main__":
    main()
