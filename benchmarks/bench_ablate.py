"""What ``mtlbench ablate`` costs beyond the training it runs, and what ``--jobs 2`` gains, measured
in one invocation on the same cells.

    python benchmarks/bench_ablate.py                 # 8 cells × 2 seeds of a tiny model, 2 epochs, CPU
    python benchmarks/bench_ablate.py --cells 4 --epochs 1

1. The bare loop: each run built and trained in this process (``build_run`` + ``Trainer.fit``,
   testing included), as a script without the sweep machinery would.
2. The same runs through ``mtlbench ablate SPEC`` (a subprocess, as a user runs it): planning and
   resolving every cell, state checks, the interpreter's start, the table and the figure.
   Overhead per cell = (2 − 1) / runs; the target is at most 2 s.
3. The same sweep again with ``--jobs 2`` (two spawned workers): the speed-up is (2) / (3).

Cells are CPU-light: a tiny model, each run on one thread (``OMP_NUM_THREADS=1`` everywhere, the
bare loop included), so that one run at a time leaves a core idle, as runs dominated by
single-threaded work (metrics, data) do. A run that keeps every core busy on its own gains nothing
from ``--jobs`` on the same cores.

Every timed sweep writes into a fresh folder; the synthrooms render is cached by a warm-up first.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """
name = "bench"
preset = "quick"
seeds = {seeds}
columns = ["depth/rmse", "seg/miou"]

[base]
tasks = ["depth", "seg"]
model.name = "hps"
model.backbone = "test_resnet"
model.width = 16
data.size = 64
data.options.frames = 32
train.epochs = {epochs}
train.batch_size = 8
train.device = "cpu"

[[axes]]
key = "train.lr"
values = {lrs}
"""


def sweep(spec: Path, out: Path, *extra: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mtlbench", "ablate", str(spec), "--out", str(out), *extra],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the sweep failed:\n{done.stderr}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_ablate-"))
    os.environ.setdefault("MTLBENCH_CACHE", str(root / "cache"))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # before torch: the sweeps inherit it
    lrs = [round(1e-3 * (i + 1), 6) for i in range(a.cells)]
    spec = root / "bench.toml"
    spec.write_text(SPEC.format(seeds=list(range(a.seeds)), epochs=a.epochs, lrs=lrs))

    import torch

    from mtlbench import config as C
    from mtlbench.ablation.sweep import prepare
    from mtlbench.engine.build import build_run
    from mtlbench.engine.trainer import Trainer

    sweep(spec, root / "warmup", "--seeds", "0")  # renders the frames once, for every later run
    plan = prepare(spec, root / "plan", None)
    runs = len(plan.jobs)
    print(f"{a.cells} cells × {a.seeds} seeds = {runs} runs of a tiny model (hps, test_resnet, 64², "
          f"{a.epochs} epoch(s)), one thread each; CPU, {os.cpu_count()} cores, torch {torch.__version__}")
    t0 = time.perf_counter()
    for i, job in enumerate(plan.jobs):
        (root / "bare" / str(i)).mkdir(parents=True)
        Trainer(build_run(C.loads(job.config)), root / "bare" / str(i)).fit()
    bare = time.perf_counter() - t0
    one = sweep(spec, root / "jobs1")
    two = sweep(spec, root / "jobs2", "--jobs", "2")
    print("\n| measurement | wall (s) | per run (s) |\n|---|---:|---:|")
    print(f"| bare loop (build + train + test, in one process) | {bare:.1f} | {bare / runs:.2f} |")
    print(f"| `mtlbench ablate` | {one:.1f} | {one / runs:.2f} |")
    print(f"| `mtlbench ablate --jobs 2` | {two:.1f} | {two / runs:.2f} |")
    print(f"\nsweep overhead per run beyond the training: {(one - bare) / runs:.2f} s (target ≤ 2 s); "
          f"--jobs 2 speed-up: ×{one / two:.2f}")


if __name__ == "__main__":
    main()
