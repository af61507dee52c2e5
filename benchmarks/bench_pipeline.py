"""Training-batch pipeline: the batched BatchPipeline against the kornia AugmentationSequential it replaced.

Both turn the same random raw batches (uint8 image, float depth, uint8 labels, as
DenseDataset.batch gives them) into model-ready tensors: flip, random resized crop, colour jitter,
edge targets, normalisation. Calls alternate old/new after a warm-up; the median per-call time of
each is compared. The aten ops per call (torch.profiler, CPU side) stand in for kernel launches,
which bound a GPU step at these sizes; host syncs (item, nonzero, ...) are counted apart.

    python benchmarks/bench_pipeline.py                                   # CPU, 256 px, batch 8 and 32
    python benchmarks/bench_pipeline.py --device cuda --repeats 50
    python benchmarks/bench_pipeline.py --size 128 --batch-size 16
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

SYNCS = {"aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero"}


class KorniaPipeline:
    """The pipeline as it was: kornia.augmentation.AugmentationSequential, then the same targets."""

    def __init__(self, device: torch.device, size: int, scale: tuple[float, float], jitter: float) -> None:
        import kornia.augmentation as K

        from mtlbench.data.pipeline import IMAGENET_MEAN, IMAGENET_STD

        self.device = device
        self.augmentation = K.AugmentationSequential(
            K.RandomHorizontalFlip(),
            K.RandomResizedCrop((size, size), scale=scale, ratio=(1.0, 1.0)),
            K.ColorJiggle(jitter, jitter, jitter, jitter / 10, p=0.8),
            data_keys=["input", "mask", "mask"])
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def __call__(self, raw: dict[str, Tensor], train: bool) -> dict[str, Tensor]:
        from mtlbench.tasks.edge import label_edges

        dev = self.device
        image = raw["image"].to(dev, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        depth = raw["depth"].to(dev, non_blocking=True).unsqueeze(1).float()
        seg = raw["seg"].to(dev, non_blocking=True).long().unsqueeze(1)
        image, depth, seg_f = self.augmentation(image, depth, seg.float())
        seg = seg_f.round().long()
        image = image.clamp_(0.0, 1.0)
        edge = label_edges(seg)
        image = (image - self.mean) / self.std
        return {"image": image, "depth": depth, "seg": seg.squeeze(1), "edge": edge, "index": raw["index"]}


def raw_batch(n: int, size: int, seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(n, size, size, generator=g) * 10
    depth[depth < 0.5] = 0.0  # holes
    return {"image": torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8),
            "depth": depth,
            "seg": torch.randint(0, 14, (n, size, size), generator=g, dtype=torch.uint8),
            "index": torch.arange(n)}


def aten_ops(fn: Callable[[], object]) -> tuple[int, int, int]:
    """(top-level aten ops, all aten events incl. nested, host syncs) of one call."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    top = [e for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    return len(top), len(events), sum(e.name in SYNCS for e in events)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--repeats", type=int, default=10, help="timed calls of each pipeline per batch size")
    ap.add_argument("--scale", type=float, nargs=2, default=[0.6, 1.0])
    ap.add_argument("--color-jitter", type=float, default=0.2)
    args = ap.parse_args()

    from mtlbench.data.pipeline import BatchPipeline
    from mtlbench.registry import TASKS
    from mtlbench.tasks import DatasetInfo

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    scale = (args.scale[0], args.scale[1])
    old = KorniaPipeline(device, args.size, scale, args.color_jitter)
    # the edge task derives its targets from the warped labels, as training does
    new = BatchPipeline(device, args.size, scale=scale, color_jitter=args.color_jitter,
                        tasks=[TASKS.build("edge", DatasetInfo())])
    print(f"device {device} | {args.size}x{args.size} | scale {scale} jitter {args.color_jitter} | "
          f"median of {args.repeats} calls each, alternating | torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'batch':>5} {'pipeline':>8} {'ms/batch':>9} {'img/s':>8} {'new/old':>8} "
          f"{'aten ops':>9} {'(nested)':>9} {'syncs':>6}")
    for b in args.batch_size:
        raws = [raw_batch(b, args.size, s) for s in range(4)]
        runners: dict[str, Callable[[int], object]] = {
            "kornia": lambda i, raws=raws: old(raws[i % 4], train=True),
            "batched": lambda i, raws=raws: new(raws[i % 4], train=True, seed=i),
        }
        for fn in runners.values():  # warm-up: first-call initialisation, allocator, caches
            for i in range(3):
                fn(i)
        sync()
        times: dict[str, list[float]] = {k: [] for k in runners}
        for i in range(args.repeats):
            for name, fn in runners.items():
                sync()
                t0 = time.perf_counter()
                fn(i)
                sync()
                times[name].append(time.perf_counter() - t0)
        ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
        for name, fn in runners.items():
            top, nested, syncs = aten_ops(lambda fn=fn: fn(99))
            ratio = f"{ms[name] / ms['kornia']:8.3f}"
            print(f"{b:>5} {name:>8} {ms[name]:9.2f} {1000 * b / ms[name]:8.1f} {ratio} "
                  f"{top:>9} {nested:>9} {syncs:>6}")


if __name__ == "__main__":
    main()
