"""Trainer throughput against a bare PyTorch loop over the same model and batches.

Both loops run the same split through the same on-device pipeline (augmentation, edge
targets), the same model, losses and Adam; they alternate, after one warm-up epoch each, and
the median epoch time of each is compared. Target: trainer / bare >= 0.95.

    python benchmarks/bench_trainer.py                       # CPU: resnet18, 128 px, batch 16
    python benchmarks/bench_trainer.py --device cuda --backbone resnet50 --size 256 --batch-size 8
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mtinet")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--frames", type=int, default=200, help="synthrooms frames (80%% train)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    args = ap.parse_args()

    from rich.console import Console

    from mtlbench.config import RunConfig, from_dict
    from mtlbench.engine.build import build_run
    from mtlbench.engine.feeding import batches, epoch_seed
    from mtlbench.engine.trainer import Trainer, task_losses
    from mtlbench.report.console import RichReporter

    cfg = from_dict({
        "model": {"name": args.model, "backbone": args.backbone, "width": 64},
        "data": {"size": args.size, "options": {"frames": args.frames}},
        "train": {"batch_size": args.batch_size, "device": args.device,
                  "precision": "bf16" if args.bf16 else "fp32", "channels_last": args.channels_last},
    }, RunConfig())
    parts = build_run(cfg)
    model, pipeline, losses, weighting = parts.model, parts.pipeline, parts.losses, parts.weighting
    train = parts.splits.train
    sync = torch.cuda.synchronize if parts.device.type == "cuda" else (lambda: None)
    autocast = (lambda: torch.autocast(parts.device.type, dtype=torch.bfloat16)) if args.bf16 else None
    opt = torch.optim.Adam(list(model.parameters()) + list(weighting.parameters()), lr=1e-4,
                           fused=parts.device.type == "cuda")  # as the trainer's

    def bare_epoch(epoch: int) -> None:
        model.train()
        seed = epoch_seed(0, epoch)
        torch.manual_seed(seed)
        for raw in batches(train, args.batch_size, True, seed, drop_last=True):
            batch = pipeline(raw, train=True)
            if autocast:
                with autocast():
                    out = model(batch["image"])
            else:
                out = model(batch["image"])
            total = weighting.combine(task_losses(losses, out, batch))  # the fixed weighting's sum
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()

    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with tempfile.TemporaryDirectory() as tmp, RichReporter(console) as reporter:
        silent = Trainer(parts, tmp)
        drawn = Trainer(parts, tmp, reporter)
        runners = {"bare loop": bare_epoch, "trainer": silent.train_epoch,
                   "trainer + rich progress": drawn.train_epoch}
        times: dict[str, list[float]] = {k: [] for k in runners}
        for fn in runners.values():  # warm-up
            fn(1)
        sync()
        for r in range(args.repeats):
            for name, fn in runners.items():
                sync()
                t0 = time.perf_counter()
                fn(r + 2)
                sync()
                times[name].append(time.perf_counter() - t0)

    images = len(train) // args.batch_size * args.batch_size
    print(f"device {parts.device} | {args.model} {args.backbone} {args.size}x{args.size} batch {args.batch_size} | "
          f"{images} images per epoch, median of {args.repeats} epochs each, alternating")
    bare = statistics.median(times["bare loop"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:>24}: {images / med:8.2f} img/s  ratio to bare {bare / med:.3f}")
    ratio = bare / statistics.median(times["trainer + rich progress"])
    print(f"trainer/bare throughput ratio (with progress bars): {ratio:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
