"""NYUv2 preparation time and cached-loader throughput, measured in one run.

1. Writes a labeled file with the real layout (MATLAB's reversed axes, 640×480, uint8 images,
   float32 depths, uint16 labels, random content) of ``--frames`` frames, then times
   ``prepare_nyuv2`` on it (target for 1449 frames: <= 180 s on 2 cores).
2. Reads the prepared cache through the training loader (array slicing + on-device
   augmentation, edge targets, normalisation) and times it against training steps of the default
   model (mtinet, resnet50, 256×256, batch 8) on the same device (target: loader >= 10× the rate a
   training step consumes).

    python benchmarks/bench_nyuv2.py [--frames 1449] [--device cpu] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def write_labeled(path: Path, frames: int, seed: int = 0) -> None:
    import h5py

    rng = np.random.default_rng(seed)
    with h5py.File(path, "w", userblock_size=512) as f:
        images = f.create_dataset("images", (frames, 3, 640, 480), np.uint8)
        depths = f.create_dataset("depths", (frames, 640, 480), np.float32)
        labels = f.create_dataset("labels", (frames, 640, 480), np.uint16)
        for s in range(0, frames, 32):
            n = min(32, frames - s)
            images[s:s + n] = rng.integers(0, 256, (n, 3, 640, 480), dtype=np.uint8)
            depths[s:s + n] = rng.uniform(0.7, 10.0, (n, 640, 480)).astype(np.float32)
            labels[s:s + n] = rng.integers(0, 895, (n, 640, 480), dtype=np.uint16)
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, written by mtlbench's benchmark")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1449)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="training steps timed")
    ap.add_argument("--workdir", default=None, help="where the file and cache go (default: a temp folder)")
    args = ap.parse_args()

    from mtlbench.config import RunConfig, from_dict
    from mtlbench.data.nyuv2 import nyuv2, prepare_nyuv2
    from mtlbench.data.pipeline import BatchPipeline
    from mtlbench.engine.build import build_losses, build_model, build_weighting, resolve, resolve_device
    from mtlbench.engine.feeding import batches
    from mtlbench.engine.trainer import task_losses
    from mtlbench.models.backbones import build_backbone
    from mtlbench.tasks import build_tasks

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mtlbench-nyu-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        mat = work / "nyu_depth_v2_labeled.mat"
        t0 = time.perf_counter()
        write_labeled(mat, args.frames)
        print(f"wrote a {mat.stat().st_size / 2**30:.2f} GiB labeled file of {args.frames} frames "
              f"in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        prepare_nyuv2(mat, work / "cache", size=args.size)
        prep = time.perf_counter() - t0
        print(f"prepare: {args.frames} frames 640x480 -> {args.size}x{args.size} in {prep:.1f} s "
              f"({args.frames / prep:.1f} frames/s; {prep / 180:.2f} of the 180 s target)")

        device = resolve_device(args.device)
        splits = nyuv2(root=str(work / "cache"), size=args.size, protocol="random")
        pipe = BatchPipeline(device, args.size)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        n_images, t0 = 0, time.perf_counter()
        for raw in batches(splits.train, args.batch_size, True, seed=0, drop_last=True):
            out = pipe(raw, train=True)
            n_images += out["image"].shape[0]
        sync()
        loader_rate = n_images / (time.perf_counter() - t0)

        cfg = from_dict({"train": {"device": args.device}}, RunConfig())
        resolve(cfg)
        tasks = build_tasks(("depth", "seg", "edge"), splits.info)
        model = build_model(cfg, tasks, build_backbone("resnet50", 128)).to(device)
        losses, weighting = build_losses(cfg, tasks, splits.info), build_weighting(cfg, list(tasks))
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        fixed = [pipe(raw, train=True) for raw, _ in zip(batches(splits.train, args.batch_size, True, 1),
                                                          range(args.steps + 1))]
        times = []
        for batch in fixed:
            sync()
            t0 = time.perf_counter()
            out = model(batch["image"])
            total = weighting.combine(task_losses(losses, out, batch))  # the default fixed weighting
            opt.zero_grad()
            total.backward()
            opt.step()
            sync()
            times.append(time.perf_counter() - t0)
        step_rate = args.batch_size / float(np.median(times[1:]))  # the first step warms up
        print(f"device {device}: cached loader with augmentation {loader_rate:.1f} img/s; training step of "
              f"mtinet resnet50 {args.size}x{args.size} batch {args.batch_size} consumes {step_rate:.2f} img/s; "
              f"ratio {loader_rate / step_rate:.1f}x (target >= 10x)")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
