"""GPU throughput of the trainer and the evaluation, printed as Markdown for docs/benchmarks.md.

Training: images/s of the real training loop (``Trainer.train_epoch``: pipeline, forward,
losses, weighting backward, fused Adam), after one warm-up epoch that also compiles, for each
model, batch size and speed setting asked. Evaluation: images/s of ``evaluate`` with every
metric, and the share of it that is not the forward pass. Peak memory is PyTorch's allocator's.

    python benchmarks/bench_gpu.py                      # the table benchmarks/gpu.sh prints
    python benchmarks/bench_gpu.py --models mtinet --batches 32 --modes bf16+cl+compile
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

MODES = {  # name: (precision, channels_last, compile)
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "bf16+cl": ("bf16", True, False),
    "bf16+cl+compile": ("bf16", True, True),
}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _config(model: str, batch: int, mode: str, args: argparse.Namespace):  # noqa: ANN202 - RunConfig
    from mtlbench.config import RunConfig, from_dict

    precision, cl, comp = MODES[mode]
    return from_dict({
        "model": {"name": model, "backbone": args.backbone},
        "data": {"size": args.size, "options": {"frames": args.frames}},
        "train": {"batch_size": batch, "eval_batch_size": 32, "device": args.device, "precision": precision,
                  "channels_last": cl, "compile": "on" if comp else "off", "compile_mode": args.compile_mode},
    }, RunConfig())


def train_row(model: str, batch: int, mode: str, args: argparse.Namespace) -> str:
    from mtlbench.engine.build import build_run
    from mtlbench.engine.trainer import Trainer

    torch._dynamo.reset()
    parts = build_run(_config(model, batch, mode, args))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(parts, tmp)
        _sync()
        t0 = time.perf_counter()
        trainer.train_epoch(1)
        _sync()
        first = time.perf_counter() - t0
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        times = []
        for epoch in range(2, 2 + args.repeats):
            t0 = time.perf_counter()
            trainer.train_epoch(epoch)
            _sync()
            times.append(time.perf_counter() - t0)
    dt = sorted(times)[len(times) // 2]
    images = len(parts.dataset_splits().train) // batch * batch
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    warm = f"{first - dt:.0f} s" if MODES[mode][2] else "-"
    return f"| {model} | {batch} | {mode} | {images / dt:,.0f} | {peak:.2f} | {warm} |"


def eval_row(model: str, args: argparse.Namespace) -> str:
    from mtlbench.engine.build import build_run
    from mtlbench.engine.evaluation import evaluate

    parts = build_run(_config(model, 8, "bf16+cl", args))
    data = parts.dataset_splits().train  # the largest split, read unaugmented as evaluation does
    bs = parts.cfg.train.eval_batch_size

    @torch.no_grad()
    def forward_only() -> None:
        parts.model.eval()
        for s in range(0, len(data), bs):
            batch = parts.pipeline(data.batch(torch.arange(s, min(s + bs, len(data)))), train=False)
            with parts.autocast():
                parts.model(batch["image"])

    forward_only()
    evaluate(parts, data, parts.autocast())  # warm-up
    _sync()
    t0 = time.perf_counter()
    forward_only()
    _sync()
    t_fwd = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate(parts, data, parts.autocast())
    _sync()
    t_all = time.perf_counter() - t0
    share = max(t_all - t_fwd, 0.0) / t_all
    return (f"| {model} | {len(data)} | {len(data) / t_all:,.0f} | {len(data) / t_fwd:,.0f} | "
            f"{100 * share:.1f} % |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mtinet,hps")
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--modes", default="fp32,bf16,bf16+cl,bf16+cl+compile",
                    help=f"comma-separated, from {', '.join(MODES)}")
    ap.add_argument("--compile-mode", default="reduce-overhead")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=640, help="synthrooms frames (80%% train)")
    ap.add_argument("--repeats", type=int, default=2, help="timed epochs per row (median)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--eval", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu: torch sees no CUDA GPU; this benchmark measures one")
    unknown = [m for m in args.modes.split(",") if m not in MODES]
    if unknown:
        sys.exit(f"bench_gpu: unknown mode {', '.join(unknown)}; choose from {', '.join(MODES)}")

    print(f"device: {torch.cuda.get_device_name()} | torch {torch.__version__} | {args.backbone} "
          f"{args.size}x{args.size} | synthrooms {args.frames} frames | compile mode {args.compile_mode}\n")
    print("| model | batch | setting | train img/s | peak GiB | compile (first epoch extra) |")
    print("|---|---:|---|---:|---:|---:|", flush=True)
    for mode in args.modes.split(","):
        for model in args.models.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                try:
                    print(train_row(model, batch, mode, args), flush=True)
                except Exception as exc:  # one row's failure is reported, the others still run
                    print(f"| {model} | {batch} | {mode} | failed: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120] if str(exc) else ''} | | |", flush=True)
    if args.eval:
        print("\n| model | frames | eval img/s (all metrics) | forward-only img/s | metrics' share |")
        print("|---|---:|---:|---:|---:|", flush=True)
        for model in args.models.split(","):
            print(eval_row(model, args), flush=True)


if __name__ == "__main__":
    main()
