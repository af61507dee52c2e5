"""Cost of accumulating every metric against the evaluation forward pass it accompanies.

On the same batches of synthrooms frames (the setting of *Beneath the Surface* by default: mtinet
on resnet50, 256×256, evaluation batch 16), it times the model's forward pass and, separately,
the metric updates of all three tasks with every metric on (pooled and per-image depth,
depth-boundary errors, segmentation confusion, ODS/OIS/AP counts), plus the final ``compute``. Forward and
metric passes alternate ``--repeats`` times; the ratio printed is the median of the per-round
ratios, with their range (a shared CPU's load drifts). Target: metrics / forward <= 0.05.

    python benchmarks/bench_eval.py                       # CPU, 2 threads
    python benchmarks/bench_eval.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mtinet")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from mtlbench.config import EvalConfig, RunConfig, from_dict
    from mtlbench.data.pipeline import BatchPipeline
    from mtlbench.data.synthrooms import render_batch
    from mtlbench.engine.build import build_model, resolve_device
    from mtlbench.models.backbones import build_backbone
    from mtlbench.tasks import DatasetInfo, build_tasks

    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cfg = from_dict({"model": {"name": args.model, "backbone": args.backbone}}, RunConfig())
    tasks = build_tasks(("depth", "seg", "edge"), DatasetInfo())
    model = build_model(cfg, tasks, build_backbone(args.backbone, cfg.model.width)).to(device).eval()
    pipeline = BatchPipeline(device, args.size, augment=False)
    n = args.batch_size * args.batches
    frames = render_batch(0, range(n), args.size)
    raws = [{"image": torch.from_numpy(frames["image"][s:s + args.batch_size]),
             "depth": torch.from_numpy(frames["depth"][s:s + args.batch_size]),
             "seg": torch.from_numpy(frames["seg"][s:s + args.batch_size]).long(),
             "index": torch.arange(s, s + args.batch_size)} for s in range(0, n, args.batch_size)]
    batches = [pipeline(r, train=False) for r in raws]

    with torch.no_grad():
        model(batches[0]["image"])  # warm-up
        forward_s, metric_s = [], []
        for _ in range(args.repeats):  # forward and metrics alternate, so both see the same machine load
            sync()
            t0 = time.perf_counter()
            outs = [model(b["image"]) for b in batches]
            sync()
            forward_s.append(time.perf_counter() - t0)
            # the predictions a real evaluation hands to the metrics
            preds = [{t: task.predict(o[t]) for t, task in tasks.items()} for o in outs]
            metrics = {t: task.metrics(EvalConfig()) for t, task in tasks.items()}
            sync()
            t0 = time.perf_counter()
            for b, p in zip(batches, preds):
                for t in tasks:
                    metrics[t].update(p[t], b)
            results = {t: m.compute() for t, m in metrics.items()}
            sync()
            metric_s.append(time.perf_counter() - t0)
    ratios = sorted(m / f for m, f in zip(metric_s, forward_s))
    fwd, met = statistics.median(forward_s), statistics.median(metric_s)
    where = f"{device}" + (f", {args.threads} threads" if device.type == "cpu" else "")
    print(f"{args.model} {args.backbone} {args.size}x{args.size}, {n} images in batches of {args.batch_size} ({where})")
    print(f"forward: {fwd:.3f} s ({1e3 * fwd / n:.1f} ms/img); all metrics: {met:.3f} s ({1e3 * met / n:.2f} ms/img)"
          f" (medians of {args.repeats})")
    per_task = []
    for t in tasks:
        m = tasks[t].metrics(EvalConfig())
        sync()
        t0 = time.perf_counter()
        for b, p in zip(batches, preds):
            m.update(p[t], b)
        m.compute()
        sync()
        per_task.append(f"{t} {1e3 * (time.perf_counter() - t0) / n:.2f}")
    print(f"per task (ms/img, one pass): {', '.join(per_task)}")
    print(f"metrics / forward = {statistics.median(ratios):.4f} median of {len(ratios)} alternating rounds "
          f"(range {ratios[0]:.4f}-{ratios[-1]:.4f}; target <= 0.05)")
    assert all(results[t] for t in tasks), "a metric came back empty"


if __name__ == "__main__":
    main()
